// Command pushsyncctl is the operator's client of a pushsync API server. It
// registers platform apps (APNs and FCM credentials), turns push sync on and
// off for identity pools, issues identity credentials, registers and
// subscribes devices and publishes test events, so that a pool can be taken
// from nothing to working pushes from the shell; it lists and removes an
// identity's devices, to see why one gets no pushes.
//
//	pushsyncctl [-endpoint URL] [-region R] [-access-key ID] [-secret-key KEY] [-o text|json] <command> [arguments]
//
// It signs its requests with the developer credentials (-access-key and
// -secret-key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY). Run
// "pushsyncctl help" for the commands.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pushsync/pushsync/internal/term"
)

// main runs the command with the process's arguments, environment and
// standard streams.
func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)) }

// defaultEndpoint is where pushsyncd's API listens unless configured.
const defaultEndpoint = "http://127.0.0.1:8081"

// command is one pushsyncctl command.
type command struct {
	name     string // "app create"
	synopsis string // the arguments, as in the usage line
	summary  string // one line
	arg      string // the name of the one positional argument, "" for none
	// optionalArg says the positional argument may be left out.
	optionalArg bool
	// required are the flags that must be given.
	required []string
	// define adds the command's flags to fs, storing into v.
	define func(fs *flag.FlagSet, v *cmdFlags)
	run    func(c *cli, v *cmdFlags) error
}

// commands lists every command in the order the usage shows them.
var commands = []*command{
	{name: "app create", synopsis: "-name N CREDENTIALS", summary: "register a platform app",
		required: []string{"name"}, run: appCreate, define: func(fs *flag.FlagSet, v *cmdFlags) {
			fs.StringVar(&v.name, "name", "", "the app's name: letters, digits, '_', '.' and '-'")
			v.creds.define(fs)
		}},
	{name: "app list", summary: "list the platform apps", run: appList},
	{name: "app show", synopsis: "NAME", arg: "NAME", summary: "show a platform app and its ARNs", run: appShow},
	{name: "app rotate", synopsis: "NAME CREDENTIALS", arg: "NAME", summary: "replace a platform app's credentials", run: appRotate,
		define: func(fs *flag.FlagSet, v *cmdFlags) { v.creds.define(fs) }},
	{name: "app delete", synopsis: "NAME [-yes]", arg: "NAME", summary: "delete a platform app no pool uses", run: appDelete, define: yesFlag},
	{name: "pool show", synopsis: "POOL", arg: "POOL", summary: "show an identity pool's push configuration", run: poolShow},
	{name: "pool set-push", synopsis: "POOL [-apns APP] [-apns-sandbox APP] [-gcm APP] [-role-arn ARN]", arg: "POOL",
		summary: "set the apps a pool pushes through", run: poolSetPush,
		define: func(fs *flag.FlagSet, v *cmdFlags) {
			fs.StringVar(&v.apns, "apns", "", "APNs app for platform APNS (production)")
			fs.StringVar(&v.apnsSandbox, "apns-sandbox", "", "APNs app for platform APNS_SANDBOX (development)")
			fs.StringVar(&v.gcm, "gcm", "", "FCM app for platform GCM")
			fs.StringVar(&v.roleARN, "role-arn", "", "IAM role ARN kept in the configuration (optional)")
		}},
	{name: "pool disable-push", synopsis: "POOL", arg: "POOL", summary: "turn push sync off for a pool", run: poolDisablePush},
	{name: "identitypool create", synopsis: "-name N [-id ID [-restore] | -region R] [-allow-unauthenticated] [OIDC]",
		summary: "create an identity pool; prints its id", required: []string{"name"}, run: identityPoolCreate, define: defineIdentityPool},
	{name: "identitypool list", summary: "list the identity pools", run: identityPoolList},
	{name: "identitypool show", synopsis: "ID", arg: "ID", summary: "show an identity pool", run: identityPoolShow},
	{name: "identitypool update", synopsis: "ID [-name N] [-allow-unauthenticated=true|false] [OIDC | -no-oidc]", arg: "ID",
		summary: "change an identity pool's settings; those not given stay as they are", run: identityPoolUpdate, define: defineIdentityPoolUpdate},
	{name: "identitypool delete", synopsis: "ID", arg: "ID", summary: "delete an identity pool", run: identityPoolDelete},
	{name: "identitypool purge", synopsis: "ID", arg: "ID", summary: "erase every identity, login, dataset and device a deleted identity pool left", run: identityPoolPurge},
	{name: "deadletter list", synopsis: "[-after SEQ] [-limit N]", summary: "list events whose pushes failed until their deliveries ran out",
		run: deadLetterList, define: func(fs *flag.FlagSet, v *cmdFlags) {
			fs.Int64Var(&v.after, "after", 0, "list dead letters after this sequence")
			fs.Int64Var(&v.limit, "limit", 100, "list at most this many")
		}},
	{name: "deadletter replay", synopsis: "SEQ | -all", arg: "SEQ", optionalArg: true, summary: "publish dead letters' events again, once the cause is fixed",
		run: deadLetterReplay, define: func(fs *flag.FlagSet, v *cmdFlags) {
			fs.BoolVar(&v.all, "all", false, "replay every dead letter, reporting those replayed, skipped and failed")
		}},
	{name: "deadletter discard", synopsis: "SEQ [-yes]", arg: "SEQ", summary: "drop a dead letter", run: deadLetterDiscard, define: yesFlag},
	{name: "secrets status", summary: "count the stored secrets under the current and the secondary master key", run: secretsStatus},
	{name: "secrets reseal", summary: "seal every secret under the secondary master key again under the current one", run: secretsReseal},
	{name: "credentials issue", synopsis: "-pool P -identity I [-duration 1h]", summary: "issue identity credentials (shell exports)",
		required: []string{"pool", "identity"}, run: credentialsIssue, define: func(fs *flag.FlagSet, v *cmdFlags) {
			identityFlags(fs, v)
			fs.DurationVar(&v.duration, "duration", 0, "lifetime, 1m to 12h (default: the server's, 1h unless configured)")
		}},
	{name: "device register", synopsis: "-pool P -identity I -platform PLATFORM -token T", summary: "register a device; prints its DeviceId",
		required: []string{"pool", "identity", "platform", "token"}, run: deviceRegister, define: func(fs *flag.FlagSet, v *cmdFlags) {
			identityFlags(fs, v)
			fs.StringVar(&v.platform, "platform", "", "APNS, APNS_SANDBOX or GCM")
			fs.StringVar(&v.token, "token", "", "the device's push token")
		}},
	{name: "device subscribe", synopsis: "-pool P -identity I -dataset D -device DEVICE", summary: "subscribe a device to a dataset",
		required: []string{"pool", "identity", "dataset", "device"}, run: deviceSubscribe, define: subscriptionFlags},
	{name: "device unsubscribe", synopsis: "-pool P -identity I -dataset D -device DEVICE", summary: "unsubscribe a device from a dataset",
		required: []string{"pool", "identity", "dataset", "device"}, run: deviceUnsubscribe, define: subscriptionFlags},
	{name: "device list", synopsis: "-pool P -identity I", summary: "list an identity's devices, their subscriptions and the sync counts pushed to them",
		required: []string{"pool", "identity"}, run: deviceList, define: identityFlags},
	{name: "device remove", synopsis: "-pool P -identity I -device DEVICE [-yes]", summary: "remove a device of an identity and its subscriptions",
		required: []string{"pool", "identity", "device"}, run: deviceRemove, define: func(fs *flag.FlagSet, v *cmdFlags) {
			identityFlags(fs, v)
			fs.StringVar(&v.device, "device", "", "DeviceId, as device register or device list printed it")
			yesFlag(fs, v)
		}},
	{name: "event publish", synopsis: "-pool P -identity I -dataset D -sync-count N [-origin DEVICE]", summary: "publish a dataset change as a sync server would",
		required: []string{"pool", "identity", "dataset", "sync-count"}, run: eventPublish, define: func(fs *flag.FlagSet, v *cmdFlags) {
			identityFlags(fs, v)
			fs.StringVar(&v.dataset, "dataset", "", "dataset name")
			fs.Int64Var(&v.syncCount, "sync-count", 0, "the dataset's new sync count")
			fs.StringVar(&v.origin, "origin", "", "DeviceId of the device that made the change; it gets no push")
		}},
	{name: "help", summary: "print this help"},
}

// identityFlags defines -pool and -identity.
func identityFlags(fs *flag.FlagSet, v *cmdFlags) {
	fs.StringVar(&v.pool, "pool", "", "id of an identity pool that exists, as identitypool create prints it")
	fs.StringVar(&v.identity, "identity", "", "identity id, such as us-east-1:a11ce000-...")
}

// yesFlag defines -yes, of the commands that undo what cannot be had back.
func yesFlag(fs *flag.FlagSet, v *cmdFlags) {
	fs.BoolVar(&v.yes, "yes", false, "do not ask for confirmation (asked only when stdin and stderr are a terminal)")
}

// subscriptionFlags defines the flags of device subscribe and unsubscribe.
func subscriptionFlags(fs *flag.FlagSet, v *cmdFlags) {
	identityFlags(fs, v)
	fs.StringVar(&v.dataset, "dataset", "", "dataset name")
	fs.StringVar(&v.device, "device", "", "DeviceId, as device register printed it")
}

// exitError ends run with a message and an exit status.
type exitError struct {
	code int
	msg  string
}

// Error returns the message.
func (e *exitError) Error() string { return e.msg }

// usageError is a command line mistake: the message, then the command's
// usage, on stderr, and exit status 2.
type usageError struct {
	cmd *command // nil for the global usage
	msg string
}

// Error returns the message.
func (e *usageError) Error() string { return e.msg }

// errHelp asks for the usage on stdout and exit status 0.
var errHelp = errors.New("help requested")

// run is the whole command: it parses args, runs the command and returns
// the exit status. getenv supplies the environment, stdin the answers to
// confirmation questions.
func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, tty: term.Is(stderr)}
	if f, ok := stdin.(*os.File); ok {
		c.stdinTTY = term.Is(f)
	}
	fs := flag.NewFlagSet("pushsyncctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	endpoint := getenv("PUSHSYNCCTL_ENDPOINT")
	if endpoint == "" {
		endpoint = defaultEndpoint
	}
	fs.StringVar(&c.endpoint, "endpoint", endpoint, "")
	fs.StringVar(&c.region, "region", "us-east-1", "")
	fs.StringVar(&c.accessKey, "access-key", getenv("AWS_ACCESS_KEY_ID"), "")
	fs.StringVar(&c.secretKey, "secret-key", getenv("AWS_SECRET_ACCESS_KEY"), "")
	fs.StringVar(&c.output, "o", "text", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return 0
		}
		printUsage(stderr)
		return 2
	}
	// Identity credentials come with a session token; take it from the
	// environment only with the environment's access key.
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c.keyFlag = given["access-key"]
	if !c.keyFlag {
		c.sessionToken = getenv("AWS_SESSION_TOKEN")
	}
	if c.output != "text" && c.output != "json" {
		return c.fail(&usageError{msg: fmt.Sprintf("-o must be text or json, got %q", c.output)})
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return c.fail(&usageError{msg: "no command given"})
	}
	if rest[0] == "help" {
		if len(rest) == 1 || rest[1] == "help" {
			printUsage(stdout)
			return 0
		}
		// A command help does not know is a mistake, not a request for
		// every command's usage.
		cmd, _ := lookup(rest[1:])
		if cmd == nil {
			return c.fail(unknownCommand(rest[1:]))
		}
		printCommandUsage(stdout, cmd)
		return 0
	}
	cmd, cmdArgs := lookup(rest)
	if cmd == nil {
		return c.fail(unknownCommand(rest))
	}
	v, err := parseCommand(cmd, cmdArgs, fs, stderr)
	if errors.Is(err, errHelp) {
		printCommandUsage(stdout, cmd)
		return 0
	}
	if err != nil {
		return c.fail(err)
	}
	return c.fail(cmd.run(c, v))
}

// newFlagSet returns the command's flag set, storing into v; it prints
// nothing itself but parse errors.
func (cmd *command) newFlagSet(v *cmdFlags, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pushsyncctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {}
	if cmd.define != nil {
		cmd.define(fs, v)
	}
	return fs
}

// parseCommand parses a command's arguments: its flags and its positional
// argument, in any order. global holds the global flags, which go before
// the command.
func parseCommand(cmd *command, args []string, global *flag.FlagSet, stderr io.Writer) (*cmdFlags, error) {
	v := &cmdFlags{cmd: cmd}
	fs := cmd.newFlagSet(v, stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			name, undefined := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
			if undefined && global.Lookup(name) != nil {
				return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("-%s is a global flag: give it before the command, as in pushsyncctl -%s ... %s", name, name, cmd.name)}
			}
			return nil, &usageError{cmd: cmd, msg: "bad flags for " + cmd.name}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	switch {
	case cmd.arg == "" && len(pos) > 0:
		return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("%s takes no arguments, got %q", cmd.name, strings.Join(pos, " "))}
	case cmd.arg != "" && len(pos) == 0 && !cmd.optionalArg:
		return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("%s needs %s", cmd.name, cmd.arg)}
	case len(pos) > 1:
		return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("%s takes one %s, got %q", cmd.name, cmd.arg, strings.Join(pos, " "))}
	case len(pos) == 1:
		v.arg = pos[0]
	}
	v.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { v.given[f.Name] = true })
	var missing []string
	for _, name := range cmd.required {
		if !v.given[name] {
			missing = append(missing, "-"+name)
		}
	}
	if len(missing) > 0 {
		return nil, &usageError{cmd: cmd, msg: fmt.Sprintf("%s needs %s", cmd.name, strings.Join(missing, ", "))}
	}
	return v, nil
}

// unknownCommand is the usage error for args that start with no command;
// for a group of commands, it names the group's.
func unknownCommand(args []string) error {
	var subs []string
	for _, cmd := range commands {
		if group, sub, ok := strings.Cut(cmd.name, " "); ok && group == args[0] {
			subs = append(subs, sub)
		}
	}
	if len(subs) > 0 {
		return &usageError{msg: fmt.Sprintf("unknown command %q; %s takes %s", strings.Join(args[:min(2, len(args))], " "), args[0], strings.Join(subs, ", "))}
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q", args[0])}
}

// lookup finds the command args start with and returns it with the rest of
// the arguments, or nil.
func lookup(args []string) (*command, []string) {
	for _, cmd := range commands {
		words := strings.Fields(cmd.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == cmd.name && cmd.run != nil {
			return cmd, args[len(words):]
		}
	}
	return nil, nil
}

// fail reports err on stderr and returns the exit status for it.
func (c *cli) fail(err error) int {
	var (
		ue *usageError
		ee *exitError
		ae *apiError
	)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "pushsyncctl: %s\n", ue.msg)
		if ue.cmd != nil {
			printCommandUsage(c.stderr, ue.cmd)
		} else {
			printUsage(c.stderr)
		}
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(c.stderr, "pushsyncctl: %s\n", ee.msg)
		return ee.code
	case errors.As(err, &ae):
		msg := ae.Error()
		if hint := c.refusalHint(ae); hint != "" {
			msg = strings.TrimSuffix(msg, ".") + hint
		}
		fmt.Fprintf(c.stderr, "pushsyncctl: %s\n", msg)
		return 1
	}
	fmt.Fprintf(c.stderr, "pushsyncctl: %v\n", err)
	return 1
}

// printUsage writes the usage: the global flags and one line per command.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `usage: pushsyncctl [global flags] <command> [arguments]

Global flags (before the command):
  -endpoint URL     the pushsync API (default $PUSHSYNCCTL_ENDPOINT, else `+defaultEndpoint+`);
                    without a scheme, https, but http for this machine (localhost, a
                    loopback address such as 127.0.0.1 or [::1], 0.0.0.0, or :PORT)
  -region REGION    the region requests are signed for (default us-east-1)
  -access-key ID    developer access key id (default $AWS_ACCESS_KEY_ID)
  -secret-key KEY   developer secret access key (default $AWS_SECRET_ACCESS_KEY; prefer the
                    variable: a flag's value shows in the machine's process list)
                    ($AWS_SESSION_TOKEN is sent too when the access key comes from the environment)
  -o FORMAT         output: text or json (default text)

Commands:
`)
	// Each command's summary goes under its synopsis: in a table, the
	// longest synopsis would push every summary past the terminal's edge.
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(cmd.name+" "+cmd.synopsis), cmd.summary)
	}
	fmt.Fprint(w, credentialsHelp+oidcHelp+`
PLATFORM is APNS, APNS_SANDBOX or GCM. POOL and P are identity pool ids (so is ID in the
identitypool commands), I identity ids, D dataset names, DEVICE DeviceIds as device register
prints them.

Run "pushsyncctl help COMMAND" or "pushsyncctl COMMAND -h" for a command's flags.
`)
}

// credentialsHelp explains CREDENTIALS in the synopses.
const credentialsHelp = `
CREDENTIALS is one of:
  -apns-topic BUNDLE -apns-key-file KEY.p8 -apns-key-id KEYID -apns-team-id TEAMID
      APNs token (.p8 key)
  -apns-topic BUNDLE -apns-cert-file CERT.pem
      APNs certificate (PEM certificate and key)
  -fcm-project PROJECT -fcm-service-account-file ACCOUNT.json
      FCM service account
`

// oidcHelp explains OIDC in the synopses.
const oidcHelp = `
OIDC is -oidc-issuer URL -oidc-client-ids IDS [-oidc-jwks-url URL]: the OpenID Connect provider
whose ID tokens the pool accepts for authenticated identities.
`

// printCommandUsage writes one command's usage and flags.
func printCommandUsage(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: pushsyncctl [global flags] %s\n  %s\n", strings.TrimSpace(cmd.name+" "+cmd.synopsis), cmd.summary)
	var buf bytes.Buffer
	cmd.newFlagSet(new(cmdFlags), &buf).PrintDefaults()
	if buf.Len() > 0 {
		fmt.Fprintf(w, "Flags:\n%s", buf.String())
	}
	if strings.Contains(cmd.synopsis, "CREDENTIALS") {
		fmt.Fprint(w, credentialsHelp)
	}
	if strings.Contains(cmd.synopsis, "OIDC") {
		fmt.Fprint(w, oidcHelp)
	}
	if cmd.name == "pool set-push" {
		fmt.Fprint(w, `
The apps given replace the pool's whole mapping (platforms not given are
dropped); each app's ARN for its platform is read from the admin API.
`)
	}
	if cmd.name == "identitypool update" {
		fmt.Fprint(w, `
Settings whose flags are not given keep their values; -oidc-issuer replaces
the pool's OpenID Connect providers with the one given.
`)
	}
	if cmd.name == "identitypool create" {
		fmt.Fprint(w, `
The id of a deleted pool whose identities and data were not purged is
refused with ResourceConflictException, so that a new pool never hands the
old pool's users their data back unasked: purge the deleted pool first for
an empty one, or give -restore to take its identities and data back.
`)
	}
	if cmd.name == "identitypool delete" {
		fmt.Fprint(w, `
The pool's identities, logins, datasets and devices stay, out of reach,
until identitypool purge erases them or identitypool create -id ID -restore
takes them back; creating the pool again without -restore is refused
meanwhile.
`)
	}
	if cmd.name == "identitypool purge" {
		fmt.Fprint(w, `
Only a deleted pool can be purged: while a pool of that id exists the API
refuses with ResourceConflictException and nothing is removed. Nor does
it remove anything until api.identity_pool_cache_ttl and 2 seconds have
passed since the deletion, while API processes may still serve the pool
from their cache; it waits meanwhile. The purge runs in bounded steps of a few hundred keys, which this command repeats
until nothing of the pool is left; one that stops early is finished by
running it again, which goes on where it stopped (the API keeps its
place). On a terminal, stderr shows its progress: the phase, the Redis
master it scans, and the keys scanned and removed. It prints how many keys
it removed.
`)
	}
	if cmd.name == "deadletter replay" {
		fmt.Fprint(w, `
With -all, every dead letter listed at the start is replayed in turn. One
discarded or replayed meanwhile is skipped. A failure that would fail the
others too (the API unreachable, the credentials refused, a server error)
stops the run, leaving them for a later one. The run ends by printing how
many were replayed, skipped, failed and not tried, and each skipped or
failed one with the API's answer; it exits 1 if any failed. On a terminal,
stderr shows its progress.
`)
	}
	if cmd.name == "credentials issue" {
		fmt.Fprint(w, `
Text output is shell exports, for eval "$(pushsyncctl credentials issue ...)";
the expiration goes to stderr. Evaluating it replaces the developer
credentials in that shell with the identity's.
`)
	}
}
