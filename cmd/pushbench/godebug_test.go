package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMergeGODEBUG(t *testing.T) {
	for _, c := range []struct{ cur, add, want string }{
		{"", "schedtrace=2147483647", "schedtrace=2147483647"},
		{"madvdontneed=1", "schedtrace=5", "madvdontneed=1,schedtrace=5"},
		{"schedtrace=0", "schedtrace=2147483647", "schedtrace=0"}, // the operator's choice wins
		{"a=1", "b=2, a=3 ,c=4", "a=1,b=2,c=4"},
		{"a=1", "", "a=1"},
	} {
		got, err := mergeGODEBUG(c.cur, c.add)
		if err != nil || got != c.want {
			t.Errorf("mergeGODEBUG(%q, %q) = %q, %v; want %q", c.cur, c.add, got, err, c.want)
		}
	}
	if _, err := mergeGODEBUG("", "a=1,b"); err == nil {
		t.Error(`"b" accepted as a setting`)
	}
}

// The test binary, started with PUSHBENCH_REEXEC_TEST set, runs
// reexecForGODEBUG with the arguments after "--" and prints the GODEBUG it
// ends up with.
func TestMain(m *testing.M) {
	if os.Getenv("PUSHBENCH_REEXEC_TEST") != "" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		if err := reexecForGODEBUG(args); err != nil {
			os.Stdout.WriteString("error: " + err.Error())
			os.Exit(1)
		}
		os.Stdout.WriteString("GODEBUG=" + os.Getenv("GODEBUG"))
		os.Exit(0)
	}
	// The test binary is pushbench's children too: the NATS server and
	// the ceiling program are pushbench started again with a subcommand.
	if len(os.Args) > 1 && (os.Args[1] == "natsd" || os.Args[1] == "ceiling") {
		main()
		os.Exit(0)
	}
	code := m.Run()
	removeBinaries()
	os.Exit(code)
}

func TestReexecSetsGODEBUGForTheWholeProcess(t *testing.T) {
	for _, c := range []struct {
		env  string
		args []string
		want string
	}{
		{"", nil, "GODEBUG=" + sysmonAwake},
		{"GODEBUG=madvdontneed=1", nil, "GODEBUG=madvdontneed=1," + sysmonAwake},
		{"GODEBUG=schedtrace=0", nil, "GODEBUG=schedtrace=0"},
		{"GODEBUG=madvdontneed=1", []string{"-godebug", ""}, "GODEBUG=madvdontneed=1"},
		{"", []string{"-godebug", "gctrace=0,schedtrace=9"}, "GODEBUG=gctrace=0,schedtrace=9"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, c.args...)...)
		cmd.Env = []string{"PUSHBENCH_REEXEC_TEST=1"}
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("%s pushbench %s: got %q, %v; want %q", c.env, strings.Join(c.args, " "), out, err, c.want)
		}
	}
}
