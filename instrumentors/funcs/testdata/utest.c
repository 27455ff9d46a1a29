// utest is the C (and, built with g++, C++) target of the function-tracing
// tests. It prints "listening on signals", then on each SIGUSR1 makes one
// round of calls and prints one line per traced call,
//
//   CALL {"fn":"utest_add","arg.a":"3","arg.b":"5","result.0":"8"}
//
// with the span attributes uranus should record.
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define TRACED __attribute__((noipa))

TRACED int utest_add(int a, int b) { return a + b; }

TRACED int utest_sub(int a, int b) { return a - b; }

// utest_calc calls both: their spans nest under its span.
TRACED long utest_calc(long x, int y) { return utest_add((int)x, y) * (long)utest_sub((int)x, y); }

static volatile int calls;

// utest_fact recurses; the store after the call keeps the compiler from
// turning the recursion into a loop.
TRACED unsigned long utest_fact(unsigned n)
{
	if (n <= 1)
		return 1;
	unsigned long r = n * utest_fact(n - 1);
	calls++;
	return r;
}

TRACED int utest_greet(const char *name, short times) { return (int)strlen(name) * times; }

// x arrives in XMM0, which uprobes cannot read; k in EDI.
TRACED double utest_scale(double x, int k) { return x * k; }

static void report_int(const char *fn, const char *args, long result)
{
	printf("CALL {\"fn\":\"%s\",%s,\"result.0\":\"%ld\"}\n", fn, args, result);
}

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	printf("listening on signals\n");
	fflush(stdout);
	for (int round = 1;; round++) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			return 1;
		char args[256];
		int a = round * 3, b = -round * 7;
		snprintf(args, sizeof args, "\"arg.a\":\"%d\",\"arg.b\":\"%d\"", a, b);
		report_int("utest_add", args, utest_add(a, b));
		snprintf(args, sizeof args, "\"arg.a\":\"%d\",\"arg.b\":\"%d\"", 100, round);
		report_int("utest_sub", args, utest_sub(100, round));

		long x = 1000L * round;
		int y = round + 1;
		long c = utest_calc(x, y);
		snprintf(args, sizeof args, "\"arg.a\":\"%d\",\"arg.b\":\"%d\"", (int)x, y);
		report_int("utest_add", args, (int)x + y);
		report_int("utest_sub", args, (int)x - y);
		snprintf(args, sizeof args, "\"arg.x\":\"%ld\",\"arg.y\":\"%d\"", x, y);
		report_int("utest_calc", args, c);

		unsigned n = 3 + round % 3;
		unsigned long f = utest_fact(n);
		for (unsigned i = n, g = 1; i >= 1; i--) {
			unsigned long v = 1;
			for (unsigned j = 2; j <= i; j++)
				v *= j;
			snprintf(args, sizeof args, "\"arg.n\":\"%u\"", i);
			report_int("utest_fact", args, (long)v);
			(void)g;
		}
		(void)f;

		const char *name = round % 2 ? "uranus" : "world, hello";
		snprintf(args, sizeof args, "\"arg.name\":\"%s\",\"arg.times\":\"%d\"", name, round);
		report_int("utest_greet", args, utest_greet(name, (short)round));

		double s = utest_scale(1.5, round);
		snprintf(args, sizeof args, "\"arg.k\":\"%d\"", round);
		printf("CALL {\"fn\":\"utest_scale\",%s,\"float\":\"%g\"}\n", args, s);
		fflush(stdout);
	}
}
