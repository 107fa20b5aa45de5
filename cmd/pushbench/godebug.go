package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// sysmonAwake keeps the Go runtime's system monitor from its deep sleep.
// The monitor sleeps whenever every P is idle, and the next system call
// wakes it, after which it polls every 20µs for a millisecond or more. A
// process that idles between bursts of work, as every one in a
// publish-to-push pipeline does below its maximum rate, pays that on
// every burst: a futex wake and dozens of short sleeps, each dear on a
// virtual machine. With a scheduler trace period set the monitor never
// deep-sleeps and backs off to one wake-up every 10ms; this period
// (2^31-1 ms, about 24.9 days of machine uptime) keeps the trace itself
// from printing. docs/performance.md has the figures.
const sysmonAwake = "schedtrace=2147483647"

// mergeGODEBUG adds the settings of add to the GODEBUG value cur, except
// those cur sets already: an operator's own choice wins.
func mergeGODEBUG(cur, add string) (string, error) {
	have := map[string]bool{}
	for _, kv := range strings.Split(cur, ",") {
		if k, _, ok := strings.Cut(kv, "="); ok {
			have[strings.TrimSpace(k)] = true
		}
	}
	out := cur
	for _, kv := range strings.Split(add, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", fmt.Errorf("%q is not name=value", kv)
		}
		if have[k] {
			continue
		}
		have[k] = true
		if out != "" {
			out += ","
		}
		out += kv
	}
	return out, nil
}

// reexecForGODEBUG starts pushbench again, in the same process, with the
// GODEBUG settings of -godebug, which the runtime reads only at start; the
// NATS server, pushsyncd and the ceiling program inherit them. It returns
// at once when they are in effect or the flags do not parse (run reports
// that).
func reexecForGODEBUG(args []string) error {
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		return nil
	}
	cur := os.Getenv("GODEBUG")
	want, err := mergeGODEBUG(cur, o.godebug)
	if err != nil || want == cur {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := []string{"GODEBUG=" + want}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	if err := syscall.Exec(self, append([]string{os.Args[0]}, args...), env); err != nil {
		return fmt.Errorf("start again with GODEBUG=%s: %w", want, err)
	}
	return nil
}
