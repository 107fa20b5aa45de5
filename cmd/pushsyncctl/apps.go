package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// cmdFlags holds the values of every command's flags; each command defines
// the ones it takes.
type cmdFlags struct {
	cmd   *command        // the command parsed
	arg   string          // the positional argument
	given map[string]bool // the flags given

	name  string
	creds appCredentials

	apns, apnsSandbox, gcm, roleARN string

	pool, identity, dataset, device string
	platform, token, origin         string
	duration                        time.Duration
	syncCount                       int64

	poolID, poolRegion, oidcIssuer, oidcClientIDs, oidcJWKSURL string
	allowUnauthenticated, noOIDC, restore                      bool

	after, limit int64
	all          bool

	yes bool // -yes: no confirmation question
}

// appCredentials are the credential flags of app create and app rotate.
type appCredentials struct {
	topic, keyFile, keyID, teamID, certFile string
	fcmProject, fcmAccountFile              string
}

// define adds the credential flags to fs.
func (a *appCredentials) define(fs *flag.FlagSet) {
	fs.StringVar(&a.topic, "apns-topic", "", "APNs: the app's bundle id")
	fs.StringVar(&a.keyFile, "apns-key-file", "", "APNs token auth: the .p8 signing key file")
	fs.StringVar(&a.keyID, "apns-key-id", "", "APNs token auth: the key's 10-character id")
	fs.StringVar(&a.teamID, "apns-team-id", "", "APNs token auth: the 10-character team id")
	fs.StringVar(&a.certFile, "apns-cert-file", "", "APNs certificate auth: PEM file with the certificate and its private key")
	fs.StringVar(&a.fcmProject, "fcm-project", "", "FCM: the Firebase project id")
	fs.StringVar(&a.fcmAccountFile, "fcm-service-account-file", "", "FCM: the service account's JSON key file")
}

// appBody is the body of CreatePlatformApp and UpdatePlatformApp.
type appBody struct {
	Name string    `json:"name,omitempty"`
	Kind string    `json:"kind"`
	APNs *apnsBody `json:"apns,omitempty"`
	FCM  *fcmBody  `json:"fcm,omitempty"`
}

// apnsBody is the apns member of appBody.
type apnsBody struct {
	Topic       string `json:"topic"`
	KeyID       string `json:"keyId,omitempty"`
	TeamID      string `json:"teamId,omitempty"`
	AuthKey     string `json:"authKey,omitempty"`
	Certificate string `json:"certificate,omitempty"`
}

// fcmBody is the fcm member of appBody.
type fcmBody struct {
	ProjectID      string `json:"projectId"`
	ServiceAccount string `json:"serviceAccount"`
}

// body checks the credential flags and reads the files they name into an
// app body. Flag mistakes are usage errors of cmd.
func (a *appCredentials) body(cmd *command) (*appBody, error) {
	usage := func(format string, args ...any) error {
		return &usageError{cmd: cmd, msg: cmd.name + ": " + fmt.Sprintf(format, args...)}
	}
	apns := a.topic != "" || a.keyFile != "" || a.keyID != "" || a.teamID != "" || a.certFile != ""
	fcm := a.fcmProject != "" || a.fcmAccountFile != ""
	switch {
	case apns && fcm:
		return nil, usage("give APNs flags or FCM flags, not both")
	case fcm:
		if a.fcmProject == "" || a.fcmAccountFile == "" {
			return nil, usage("an FCM app needs -fcm-project and -fcm-service-account-file")
		}
		sa, err := readFile("-fcm-service-account-file", a.fcmAccountFile)
		if err != nil {
			return nil, err
		}
		return &appBody{Kind: "fcm", FCM: &fcmBody{ProjectID: a.fcmProject, ServiceAccount: sa}}, nil
	case apns:
		if a.topic == "" {
			return nil, usage("an APNs app needs -apns-topic (the bundle id)")
		}
		token := a.keyFile != "" || a.keyID != "" || a.teamID != ""
		switch {
		case token && a.certFile != "":
			return nil, usage("give -apns-key-file (with -apns-key-id and -apns-team-id) or -apns-cert-file, not both")
		case a.certFile != "":
			cert, err := readFile("-apns-cert-file", a.certFile)
			if err != nil {
				return nil, err
			}
			return &appBody{Kind: "apns", APNs: &apnsBody{Topic: a.topic, Certificate: cert}}, nil
		case a.keyFile == "" || a.keyID == "" || a.teamID == "":
			return nil, usage("APNs token authentication needs -apns-key-file, -apns-key-id and -apns-team-id (or give -apns-cert-file)")
		}
		key, err := readFile("-apns-key-file", a.keyFile)
		if err != nil {
			return nil, err
		}
		return &appBody{Kind: "apns", APNs: &apnsBody{Topic: a.topic, KeyID: a.keyID, TeamID: a.teamID, AuthKey: key}}, nil
	}
	return nil, usage("give the app's credentials: APNs (-apns-topic with -apns-key-file, -apns-key-id, -apns-team-id or with -apns-cert-file) or FCM (-fcm-project, -fcm-service-account-file)")
}

// readFile reads a file named by a flag, relative to the working directory.
func readFile(flagName, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", &exitError{code: 1, msg: fmt.Sprintf("%s: cannot read %s: %v", flagName, path, unwrapPathError(err))}
	}
	return string(data), nil
}

// unwrapPathError drops the path os errors repeat.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// appView is a platform app as the admin API shows it.
type appView struct {
	Name            string            `json:"name"`
	Kind            string            `json:"kind"`
	Revision        int64             `json:"revision"`
	CreatedAt       time.Time         `json:"createdAt"`
	UpdatedAt       time.Time         `json:"updatedAt"`
	ApplicationARNs map[string]string `json:"applicationArns"`
	APNs            *struct {
		Topic              string     `json:"topic"`
		Auth               string     `json:"auth"`
		KeyID              string     `json:"keyId"`
		TeamID             string     `json:"teamId"`
		CertificateSubject string     `json:"certificateSubject"`
		CertificateExpires *time.Time `json:"certificateExpires"`
	} `json:"apns"`
	FCM *struct {
		ProjectID   string `json:"projectId"`
		ClientEmail string `json:"clientEmail"`
	} `json:"fcm"`
	Unreadable string `json:"unreadable"`
}

// appPath is the admin API path of an app.
func appPath(name string) string { return "/admin/v1/apps/" + segment(name) }

// getApp reads an app's view.
func (c *cli) getApp(name string) (*appView, error) {
	raw, err := c.admin(http.MethodGet, appPath(name), nil)
	if err != nil {
		return nil, err
	}
	var v appView
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("the API answered an app view that does not decode: %w", err)
	}
	return &v, nil
}

// appCreate registers a platform app.
func appCreate(c *cli, v *cmdFlags) error {
	body, err := v.creds.body(v.cmd)
	if err != nil {
		return err
	}
	body.Name = v.name
	raw, err := c.admin(http.MethodPost, "/admin/v1/apps", body)
	if err != nil {
		return err
	}
	return c.printApp(raw)
}

// appRotate replaces an app's credentials.
func appRotate(c *cli, v *cmdFlags) error {
	body, err := v.creds.body(v.cmd)
	if err != nil {
		return err
	}
	raw, err := c.admin(http.MethodPut, appPath(v.arg), body)
	if err != nil {
		return err
	}
	return c.printApp(raw)
}

// appShow prints one app.
func appShow(c *cli, v *cmdFlags) error {
	raw, err := c.admin(http.MethodGet, appPath(v.arg), nil)
	if err != nil {
		return err
	}
	return c.printApp(raw)
}

// appDelete deletes an app.
func appDelete(c *cli, v *cmdFlags) error {
	if err := c.confirm(v, fmt.Sprintf("delete platform app %s and its credentials", v.arg), "the app is kept"); err != nil {
		return err
	}
	raw, err := c.admin(http.MethodDelete, appPath(v.arg), nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(raw)
	}
	_, err = fmt.Fprintf(c.stdout, "deleted platform app %s\n", v.arg)
	return err
}

// appList prints every app, one line each.
func appList(c *cli, _ *cmdFlags) error {
	raw, err := c.admin(http.MethodGet, "/admin/v1/apps", nil)
	if err != nil {
		return err
	}
	var list struct {
		Apps []appView `json:"apps"`
	}
	if done, err := c.decodeAnswer(raw, "an app list", &list); done || err != nil {
		return err
	}
	if len(list.Apps) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no platform apps")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tREVISION\tPLATFORMS\tCREDENTIALS\tUPDATED")
	for _, a := range list.Apps {
		updated := "-" // an unreadable app's times are sealed with it
		if !a.UpdatedAt.IsZero() {
			updated = a.UpdatedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", a.Name, a.Kind, a.Revision,
			strings.Join(sortedKeys(a.ApplicationARNs), ","), a.credentialSummary(), updated)
	}
	return tw.Flush()
}

// credentialSummary describes an app's credentials in a few words.
func (a *appView) credentialSummary() string {
	switch {
	case a.Unreadable != "":
		return "unreadable: no configured master key opens it; register its credentials again with app rotate"
	case a.APNs != nil && a.APNs.Auth == "certificate":
		s := "topic " + a.APNs.Topic + ", certificate"
		if e := a.APNs.CertificateExpires; e != nil {
			s += " until " + e.UTC().Format(time.DateOnly)
		}
		return s
	case a.APNs != nil:
		return fmt.Sprintf("topic %s, key %s of team %s", a.APNs.Topic, a.APNs.KeyID, a.APNs.TeamID)
	case a.FCM != nil:
		return fmt.Sprintf("project %s, %s", a.FCM.ProjectID, a.FCM.ClientEmail)
	}
	return ""
}

// printApp prints an app view.
func (c *cli) printApp(raw []byte) error {
	var a appView
	if done, err := c.decodeAnswer(raw, "an app view", &a); done || err != nil {
		return err
	}
	var kv [][2]string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, [2]string{k, v})
		}
	}
	add("name", a.Name)
	add("kind", a.Kind)
	add("revision", fmt.Sprint(a.Revision))
	add("created", a.CreatedAt.UTC().Format(time.RFC3339))
	add("updated", a.UpdatedAt.UTC().Format(time.RFC3339))
	if p := a.APNs; p != nil {
		add("topic", p.Topic)
		add("auth", p.Auth)
		add("key id", p.KeyID)
		add("team id", p.TeamID)
		add("certificate subject", p.CertificateSubject)
		if p.CertificateExpires != nil {
			add("certificate expires", p.CertificateExpires.UTC().Format(time.RFC3339))
		}
	}
	if f := a.FCM; f != nil {
		add("project", f.ProjectID)
		add("client email", f.ClientEmail)
	}
	for _, p := range sortedKeys(a.ApplicationARNs) {
		add("arn "+p, a.ApplicationARNs[p])
	}
	return c.printKV(kv)
}

// printKV prints aligned "key: value" lines.
func (c *cli) printKV(kv [][2]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 1, ' ', 0)
	for _, p := range kv {
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], p[1])
	}
	return tw.Flush()
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
