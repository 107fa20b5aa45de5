//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// platformFlags pairs the platforms with the pool set-push flags naming
// their apps.
var platformFlags = []struct{ platform, flag string }{
	{"APNS", "apns"}, {"APNS_SANDBOX", "apns-sandbox"}, {"GCM", "gcm"},
}

// poolShow prints a pool's configuration.
func poolShow(c *cli, v *cmdFlags) error {
	cs, err := c.cognito()
	if err != nil {
		return err
	}
	out, err := cs.GetIdentityPoolConfiguration(&cognitosync.GetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(v.arg)})
	if err != nil {
		return c.syncError(err)
	}
	if c.output == "json" {
		return c.printSDKJSON(out)
	}
	return c.printPool(aws.StringValue(out.IdentityPoolId), out.PushSync, out.CognitoStreams)
}

// poolSetPush looks up the app named for each platform and sets the pool's
// push configuration to those apps' ARNs.
func poolSetPush(c *cli, v *cmdFlags) error {
	names := map[string]string{"APNS": v.apns, "APNS_SANDBOX": v.apnsSandbox, "GCM": v.gcm}
	ps := &cognitosync.PushSync{ApplicationArns: []*string{}}
	for _, pf := range platformFlags {
		name := names[pf.platform]
		if name == "" {
			continue
		}
		app, err := c.getApp(name)
		if err != nil {
			return err
		}
		arn := app.ApplicationARNs[pf.platform]
		if arn == "" {
			return &exitError{code: 1, msg: fmt.Sprintf("-%s %s: %s is an %s app and cannot serve platform %s (its platforms: %s)",
				pf.flag, name, name, app.Kind, pf.platform, strings.Join(sortedKeys(app.ApplicationARNs), ", "))}
		}
		ps.ApplicationArns = append(ps.ApplicationArns, aws.String(arn))
	}
	if len(ps.ApplicationArns) == 0 {
		return &usageError{cmd: v.cmd, msg: "pool set-push needs at least one of -apns, -apns-sandbox and -gcm (pool disable-push turns push sync off)"}
	}
	if v.roleARN != "" {
		ps.RoleArn = aws.String(v.roleARN)
	}
	return c.setPush(v.arg, ps)
}

// poolDisablePush sets the pool's application ARNs to none.
func poolDisablePush(c *cli, v *cmdFlags) error {
	return c.setPush(v.arg, &cognitosync.PushSync{ApplicationArns: []*string{}})
}

// setPush calls SetIdentityPoolConfiguration and prints the result.
func (c *cli) setPush(pool string, ps *cognitosync.PushSync) error {
	cs, err := c.cognito()
	if err != nil {
		return err
	}
	out, err := cs.SetIdentityPoolConfiguration(&cognitosync.SetIdentityPoolConfigurationInput{IdentityPoolId: aws.String(pool), PushSync: ps})
	if err != nil {
		return c.syncError(err)
	}
	if c.output == "json" {
		return c.printSDKJSON(out)
	}
	return c.printPool(aws.StringValue(out.IdentityPoolId), out.PushSync, out.CognitoStreams)
}

// printPool prints a pool configuration as key: value lines, naming the
// app behind each application ARN.
func (c *cli) printPool(pool string, ps *cognitosync.PushSync, st *cognitosync.CognitoStreams) error {
	kv := [][2]string{{"pool", pool}}
	if ps == nil || len(ps.ApplicationArns) == 0 {
		kv = append(kv, [2]string{"push sync", "off"})
	} else {
		kv = append(kv, [2]string{"push sync", "on"})
		arns := aws.StringValueSlice(ps.ApplicationArns)
		width := 0
		for _, arn := range arns {
			_, app := splitARN(arn)
			width = max(width, len(app))
		}
		for _, arn := range arns {
			platform, app := splitARN(arn)
			kv = append(kv, [2]string{platform, fmt.Sprintf("%-*s  %s", width, app, arn)})
		}
		if ps.RoleArn != nil {
			kv = append(kv, [2]string{"role arn", *ps.RoleArn})
		}
	}
	if st != nil {
		for _, f := range []struct{ k, v string }{
			{"stream name", aws.StringValue(st.StreamName)},
			{"stream role arn", aws.StringValue(st.RoleArn)},
			{"streaming status", aws.StringValue(st.StreamingStatus)},
		} {
			if f.v != "" {
				kv = append(kv, [2]string{f.k, f.v})
			}
		}
	}
	return c.printKV(kv)
}

// splitARN returns the platform and app name of a platform application
// ARN (arn:aws:sns:REGION:ACCOUNT:app/PLATFORM/NAME).
func splitARN(arn string) (platform, app string) {
	_, rest, ok := strings.Cut(arn, ":app/")
	if !ok {
		return "application", arn
	}
	platform, app, _ = strings.Cut(rest, "/")
	return platform, app
}

// credentialsIssue issues identity credentials and prints them as shell
// exports, the expiration on stderr.
func credentialsIssue(c *cli, v *cmdFlags) error {
	in := map[string]any{"IdentityPoolId": v.pool, "IdentityId": v.identity}
	if v.given["duration"] {
		// The API's range of DurationSeconds (sync/api issueCredentials).
		if v.duration < time.Minute || v.duration > 12*time.Hour {
			return &usageError{cmd: v.cmd, msg: fmt.Sprintf("-duration must be from 1m to 12h, got %s", v.duration)}
		}
		if v.duration%time.Second != 0 {
			return &usageError{cmd: v.cmd, msg: fmt.Sprintf("-duration must be whole seconds, such as 15m or 1h, got %s", v.duration)}
		}
		in["DurationSeconds"] = int64(v.duration / time.Second)
	}
	raw, err := c.admin(http.MethodPost, "/admin/v1/credentials", in)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(raw)
	}
	var out struct {
		IdentityPoolId, IdentityId string
		Credentials                struct {
			AccessKeyId, SecretKey, SessionToken string
			Expiration                           float64
		}
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("the API answered credentials that do not decode: %w", err)
	}
	cr := out.Credentials
	fmt.Fprintf(c.stdout, "export AWS_ACCESS_KEY_ID=%s;\nexport AWS_SECRET_ACCESS_KEY=%s;\nexport AWS_SESSION_TOKEN=%s;\n",
		shellQuote(cr.AccessKeyId), shellQuote(cr.SecretKey), shellQuote(cr.SessionToken))
	exp := time.Unix(int64(cr.Expiration), 0).UTC()
	_, err = fmt.Fprintf(c.stderr, "credentials of %s in %s expire at %s (in %s)\n",
		out.IdentityId, out.IdentityPoolId, exp.Format(time.RFC3339), time.Until(exp).Round(time.Second))
	return err
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// deviceRegister registers a device and prints its DeviceId.
func deviceRegister(c *cli, v *cmdFlags) error {
	cs, err := c.cognito()
	if err != nil {
		return err
	}
	out, err := cs.RegisterDevice(&cognitosync.RegisterDeviceInput{
		IdentityPoolId: aws.String(v.pool), IdentityId: aws.String(v.identity),
		Platform: aws.String(v.platform), Token: aws.String(v.token),
	})
	if err != nil {
		return c.syncError(err)
	}
	if c.output == "json" {
		return c.printSDKJSON(out)
	}
	_, err = fmt.Fprintln(c.stdout, aws.StringValue(out.DeviceId))
	return err
}

// deviceSubscribe subscribes a device to a dataset.
func deviceSubscribe(c *cli, v *cmdFlags) error {
	return c.subscription(v, "subscribed device %s to dataset %s\n", func(cs *cognitosync.CognitoSync) (any, error) {
		return cs.SubscribeToDataset(&cognitosync.SubscribeToDatasetInput{
			IdentityPoolId: aws.String(v.pool), IdentityId: aws.String(v.identity),
			DatasetName: aws.String(v.dataset), DeviceId: aws.String(v.device),
		})
	})
}

// deviceUnsubscribe unsubscribes a device from a dataset.
func deviceUnsubscribe(c *cli, v *cmdFlags) error {
	return c.subscription(v, "unsubscribed device %s from dataset %s\n", func(cs *cognitosync.CognitoSync) (any, error) {
		return cs.UnsubscribeFromDataset(&cognitosync.UnsubscribeFromDatasetInput{
			IdentityPoolId: aws.String(v.pool), IdentityId: aws.String(v.identity),
			DatasetName: aws.String(v.dataset), DeviceId: aws.String(v.device),
		})
	})
}

// subscription runs a subscribe or unsubscribe call and reports it.
func (c *cli) subscription(v *cmdFlags, done string, call func(*cognitosync.CognitoSync) (any, error)) error {
	cs, err := c.cognito()
	if err != nil {
		return err
	}
	out, err := call(cs)
	if err != nil {
		return c.syncError(err)
	}
	if c.output == "json" {
		return c.printSDKJSON(out)
	}
	_, err = fmt.Fprintf(c.stdout, done, v.device, v.dataset)
	return err
}

// eventPublish publishes a dataset-changed event through the admin API.
func eventPublish(c *cli, v *cmdFlags) error {
	in := map[string]any{"IdentityPoolId": v.pool, "IdentityId": v.identity, "DatasetName": v.dataset, "SyncCount": v.syncCount}
	if v.origin != "" {
		in["OriginDeviceId"] = v.origin
	}
	raw, err := c.admin(http.MethodPost, "/admin/v1/events", in)
	if err != nil {
		return err
	}
	var out struct {
		Stream    string
		Sequence  uint64
		Duplicate bool
	}
	if done, err := c.decodeAnswer(raw, "a publish result", &out); done || err != nil {
		return err
	}
	return c.printKV([][2]string{
		{"stream", out.Stream},
		{"sequence", fmt.Sprint(out.Sequence)},
		{"duplicate", fmt.Sprint(out.Duplicate)},
	})
}
