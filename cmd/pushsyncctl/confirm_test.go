package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
)

// ctlAtTerminal runs pushsyncctl as a person at a terminal does, stdin and
// stderr on a pseudo-terminal, typing answer; it returns what the command
// printed, stderr being what the terminal showed.
func ctlAtTerminal(t *testing.T, env map[string]string, answer string, args ...string) result {
	t.Helper()
	pt, tty := openPTY(t)
	var (
		screen bytes.Buffer
		read   sync.WaitGroup
	)
	read.Add(1)
	go func() { defer read.Done(); _, _ = io.Copy(&screen, pt) }()
	if _, err := io.WriteString(pt, answer); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	code := run(args, func(k string) string { return env[k] }, tty, &stdout, tty)
	tty.Close()
	read.Wait()
	return result{stdout.String(), screen.String(), code}
}

// TestDestructiveCommandsAskAtATerminal: app delete, device remove and
// deadletter discard undo what cannot be had back, so at a terminal they
// ask first and do nothing unless the answer is yes; -yes skips the
// question, and a script (stdin not a terminal) is never asked.
func TestDestructiveCommandsAskAtATerminal(t *testing.T) {
	d := startDaemon(t)
	d.serviceAccount("sa.json")
	d.ctl("app", "create", "-name", "game-android", "-fcm-project", project, "-fcm-service-account-file", "sa.json")

	// No: the app stays.
	r := ctlAtTerminal(t, d.env, "n\n", "app", "delete", "game-android")
	if r.code != 1 || !strings.Contains(r.stderr, "delete platform app game-android and its credentials? [y/N] ") ||
		!strings.Contains(r.stderr, "app delete: not confirmed; the app is kept (-yes skips the question)") || r.stdout != "" {
		t.Errorf("app delete at a terminal, answered n: %s", r)
	}
	d.ctl("app", "show", "game-android")
	// Only a return, or the terminal's end of input, is no too.
	for _, answer := range []string{"\n", "\x04"} {
		if r := ctlAtTerminal(t, d.env, answer, "app", "delete", "game-android"); r.code != 1 || !strings.Contains(r.stderr, "not confirmed") {
			t.Errorf("app delete at a terminal, answered %q: %s", answer, r)
		}
	}
	d.ctl("app", "show", "game-android")
	// Yes: deleted.
	r = ctlAtTerminal(t, d.env, "y\n", "app", "delete", "game-android")
	if r.code != 0 || r.stdout != "deleted platform app game-android\n" {
		t.Errorf("app delete at a terminal, answered y: %s", r)
	}
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException"}, "app", "show", "game-android")

	d.pushApps()
	id := strings.TrimSpace(d.ctl("device", "register", "-pool", pool, "-identity", alice, "-platform", "APNS", "-token", tok(1)))
	remove := []string{"device", "remove", "-pool", pool, "-identity", alice, "-device", id}
	r = ctlAtTerminal(t, d.env, "no\n", remove...)
	if r.code != 1 || !strings.Contains(r.stderr, "remove device "+id+" of identity "+alice+" with its subscriptions? [y/N] ") ||
		!strings.Contains(r.stderr, "device remove: not confirmed; the device is kept") {
		t.Errorf("device remove at a terminal, answered no: %s", r)
	}
	if out := d.ctl("device", "list", "-pool", pool, "-identity", alice); !strings.Contains(out, id) {
		t.Fatalf("device %s is gone after device remove was answered no:\n%s", id, out)
	}
	// -yes: no question.
	r = ctlAtTerminal(t, d.env, "", append(remove, "-yes")...)
	if r.code != 0 || strings.Contains(r.stderr, "[y/N]") || !strings.Contains(r.stdout, "removed device "+id) {
		t.Errorf("device remove -yes at a terminal: %s", r)
	}

	// Nothing is sent to the API before the answer: a dead letter that
	// does not exist is not even looked for.
	r = ctlAtTerminal(t, d.env, "n\n", "deadletter", "discard", "7")
	if r.code != 1 || !strings.Contains(r.stderr, "discard dead letter 7, its event never pushed? [y/N] ") ||
		!strings.Contains(r.stderr, "deadletter discard: not confirmed; the dead letter is kept") || strings.Contains(r.stderr, "ResourceNotFoundException") {
		t.Errorf("deadletter discard at a terminal, answered n: %s", r)
	}
	// A script is not asked.
	d.ctlFail(d.env, 1, []string{"ResourceNotFoundException: no dead letter 7"}, "deadletter", "discard", "7")
}
