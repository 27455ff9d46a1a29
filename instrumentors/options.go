package instrumentors

import (
	"flag"
	"fmt"
	"log/slog"
	"strconv"
)

// Option is a command-line flag an instrumentor declares for itself: the
// command wires every instrumentor's options from the registry, and
// --help, --list and inspect show them, so that adding a library never
// means editing cmd/.
type Option struct {
	// Name is the flag's name, without dashes ("keep-query-values").
	Name string
	// Usage says what it does, for --help; a `WORD` in backquotes names
	// its argument, as in package flag.
	Usage string
	// Bool options are switches (--name), the others take a value.
	Bool bool
	// Parse checks one value as the flag is read, so that a bad value is
	// reported at once, naming the flag; it returns what Configure gets.
	// Nil keeps the text.
	Parse func(string) (any, error)
}

// Settings are the values given to an instrumentor's options, by option
// name, in command-line order: a repeated flag has several.
type Settings map[string][]any

// Bool is a switch's value: whether it was given (and not as =false).
func (s Settings) Bool(name string) bool {
	v := s[name]
	if len(v) == 0 {
		return false
	}
	b, _ := v[len(v)-1].(bool)
	return b
}

// Last is the last value given to name, or nil.
func (s Settings) Last(name string) any {
	if v := s[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return nil
}

// DeclareFlags declares the options of every instrumentor in list on fs.
// Parsing fs fills the returned settings, by instrumentor ID.
func DeclareFlags(fs *flag.FlagSet, list []*Instrumentor) map[string]Settings {
	out := map[string]Settings{}
	for _, in := range list {
		set := Settings{}
		out[in.ID] = set
		for _, o := range in.Options {
			o := o
			if o.Bool {
				fs.BoolFunc(o.Name, o.Usage, func(s string) error {
					b, err := strconv.ParseBool(s)
					if err != nil {
						return fmt.Errorf("%q is not true or false", s)
					}
					set[o.Name] = append(set[o.Name], b)
					return nil
				})
				continue
			}
			fs.Func(o.Name, o.Usage, func(s string) error {
				var v any = s
				if o.Parse != nil {
					var err error
					if v, err = o.Parse(s); err != nil {
						return err
					}
				}
				set[o.Name] = append(set[o.Name], v)
				return nil
			})
		}
	}
	return out
}

// Configure returns list with each instrumentor that declares Configure
// replaced by the result for its settings (the declarations stay as they
// are), and the IDs of the instrumentors that are off by default and that
// their settings turned on (--func names functions, say).
func Configure(list []*Instrumentor, settings map[string]Settings, log *slog.Logger) ([]*Instrumentor, map[string]bool, error) {
	out := make([]*Instrumentor, 0, len(list))
	on := map[string]bool{}
	for _, in := range list {
		if in.Configure == nil {
			out = append(out, in)
			continue
		}
		c, err := in.Configure(in, settings[in.ID], log)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", in.ID, err)
		}
		if in.OffByDefault && !c.OffByDefault {
			on[in.ID] = true
		}
		out = append(out, c)
	}
	return out, on, nil
}
