//lint:file-ignore SA1019 aws-sdk-go v1 is the SDK pushsync must stay compatible with (the Cognito Sync clients apps ship).

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	v4 "github.com/aws/aws-sdk-go/aws/signer/v4"
	"github.com/aws/aws-sdk-go/private/protocol/json/jsonutil"
	"github.com/aws/aws-sdk-go/service/cognitosync"
)

// adminService is the SigV4 signing service of pushsync's admin API.
const adminService = "pushsync"

// clock is the time the admin API's requests are signed with: this
// machine's clock.
var clock = time.Now

// requestTimeout bounds one API request.
const requestTimeout = 30 * time.Second

// cli holds the global flags and the output streams of one run.
type cli struct {
	endpoint, region     string
	accessKey, secretKey string
	sessionToken         string
	keyFlag              bool   // the access key came from -access-key, not the environment
	output               string // "text" or "json"
	stdin                io.Reader
	stdout, stderr       io.Writer
	// tty says stderr is a terminal, where long runs show their progress.
	tty bool
	// stdinTTY says stdin is a terminal, where a person can answer.
	stdinTTY bool

	httpClient *http.Client
	sync       *cognitosync.CognitoSync
}

// apiError is an error answer of the API: {"__type","message"} and the
// X-Amzn-ErrorType header, or an AWS SDK error.
type apiError struct {
	Type    string
	Message string
	// RequestID is the x-amzn-RequestId of a server error (5xx), which
	// finds its cause in the pushsyncd log; "" for other answers.
	RequestID string
}

// Error returns the type and the message, if the answer had one, and the
// request id of a server error.
func (e *apiError) Error() string {
	s := e.Type
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RequestID != "" {
		s += " (request id " + e.RequestID + ")"
	}
	return s
}

// baseURL is the endpoint with a scheme and without a trailing slash. An
// endpoint without a scheme is https, but on this machine (a loopback host,
// or none, as in ":8081"), where pushsyncd's own plain HTTP listener is:
// the requests carry platform apps' private keys and service accounts, and
// the answers identity credentials' secrets, which must not cross a network
// in the clear because a scheme was left out.
func (c *cli) baseURL() string {
	u := strings.TrimRight(c.endpoint, "/")
	if !strings.Contains(u, "://") {
		if onThisMachine(u) {
			return "http://" + u
		}
		return "https://" + u
	}
	return u
}

// onThisMachine reports whether an endpoint without a scheme names this
// machine: localhost, a loopback or unspecified address, or no host.
func onThisMachine(endpoint string) bool {
	u, err := url.Parse("http://" + endpoint)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// credentials returns the developer credentials, or an exitError saying how
// to give them.
func (c *cli) credentials() (*credentials.Credentials, error) {
	if c.accessKey == "" || c.secretKey == "" {
		return nil, &exitError{code: 2, msg: "no credentials: set -access-key and -secret-key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, to the API's developer credentials (api.developer_access_key_id and api.developer_secret_access_key)"}
	}
	return credentials.NewStaticCredentials(c.accessKey, c.secretKey, c.sessionToken), nil
}

// refusalHint says, for an answer refusing the credentials sent as
// unknown, which access key went, from where, with which session token,
// and what to do; for a signature refused for its time, that this
// machine's clock is off; "" for any other answer. The API's words ("The
// security token included in the request is invalid.", "Signature
// expired") name none of them, and the likeliest cause of the first, a
// session token left in the environment by evaluating credentials issue,
// is out of sight.
func (c *cli) refusalHint(e *apiError) string {
	from := "AWS_ACCESS_KEY_ID"
	if c.keyFlag {
		from = "-access-key"
	}
	switch {
	case e.Type == "InvalidSignatureException" && (strings.HasPrefix(e.Message, "Signature expired") || strings.HasPrefix(e.Message, "Signature not yet current")):
		return "; this machine's clock is off the API's by more than the skew a signature may have: set it right (NTP), then run the command again"
	case e.Type == "UnrecognizedClientException" && c.sessionToken != "":
		return fmt.Sprintf("; the API knows no credentials of access key %s (%s) with the session token in AWS_SESSION_TOKEN: developer credentials take none, so unset AWS_SESSION_TOKEN for them (evaluating credentials issue sets it); identity credentials need the token issued with them", c.accessKey, from)
	case e.Type == "UnrecognizedClientException":
		return fmt.Sprintf("; the API knows no access key %s (%s): give its developer credentials (api.developer_access_key_id), or identity credentials with their AWS_SESSION_TOKEN", c.accessKey, from)
	}
	return ""
}

// client returns the HTTP client of both APIs.
func (c *cli) client() *http.Client {
	if c.httpClient == nil {
		c.httpClient = &http.Client{Timeout: requestTimeout}
	}
	return c.httpClient
}

// admin sends a signed admin API request with in as its JSON body (none if
// nil) and returns the response body; an error answer is an *apiError.
func (c *cli) admin(method, path string, in any) ([]byte, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequest(method, c.baseURL()+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("-endpoint %q: %w", c.endpoint, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if _, err := v4.NewSigner(creds).Sign(req, bytes.NewReader(body), adminService, c.region, clock()); err != nil {
		return nil, fmt.Errorf("sign the request: %w", err)
	}
	res, err := c.client().Do(req)
	if err != nil {
		return nil, &exitError{code: 1, msg: fmt.Sprintf("cannot reach the pushsync API at %s: %v", c.baseURL(), unwrapURLError(err))}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s %s: %w", method, path, err)
	}
	if len(data) > maxAnswer {
		return nil, fmt.Errorf("the answer of %s %s is over %d MiB, more than pushsyncctl reads", method, path, maxAnswer>>20)
	}
	if res.StatusCode >= 300 {
		return nil, decodeError(res, data)
	}
	return data, nil
}

// maxAnswer bounds the answer to an admin request pushsyncctl reads.
const maxAnswer = 16 << 20

// unwrapURLError drops the "Get URL:" part net/http adds.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// decodeError turns an error answer into an *apiError.
func decodeError(res *http.Response, data []byte) error {
	var body struct {
		Type     string `json:"__type"`
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	_ = json.Unmarshal(data, &body)
	typ := res.Header.Get("X-Amzn-ErrorType")
	if typ == "" {
		typ = body.Type
	}
	// AWS error types may carry a namespace ("ns#Type") or a suffix
	// ("Type:http://...").
	if i := strings.LastIndex(typ, "#"); i >= 0 {
		typ = typ[i+1:]
	}
	if i := strings.Index(typ, ":"); i >= 0 {
		typ = typ[:i]
	}
	msg := body.Message
	if msg == "" {
		msg = body.Message2
	}
	var id string
	if res.StatusCode >= 500 {
		id = res.Header.Get("X-Amzn-RequestId")
	}
	if typ == "" {
		text := strings.TrimSpace(string(data))
		if len(text) > 200 {
			text = text[:200] + "…"
		}
		return &apiError{Type: "HTTP " + res.Status, Message: text, RequestID: id}
	}
	return &apiError{Type: typ, Message: msg, RequestID: id}
}

// cognito returns the Cognito Sync client of the endpoint.
func (c *cli) cognito() (*cognitosync.CognitoSync, error) {
	if c.sync != nil {
		return c.sync, nil
	}
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	sess, err := session.NewSession(&aws.Config{
		Endpoint:    aws.String(c.baseURL()),
		Region:      aws.String(c.region),
		Credentials: creds,
		MaxRetries:  aws.Int(1),
		HTTPClient:  c.client(),
	})
	if err != nil {
		return nil, fmt.Errorf("AWS SDK session: %w", err)
	}
	c.sync = cognitosync.New(sess)
	return c.sync, nil
}

// syncError turns an AWS SDK error into an *apiError or an exitError.
func (c *cli) syncError(err error) error {
	var rf awserr.RequestFailure
	if errors.As(err, &rf) {
		e := &apiError{Type: rf.Code(), Message: rf.Message()}
		if rf.StatusCode() >= 500 {
			e.RequestID = rf.RequestID()
		}
		return e
	}
	var ae awserr.Error
	if errors.As(err, &ae) {
		if ae.Code() == "RequestError" && ae.OrigErr() != nil {
			return &exitError{code: 1, msg: fmt.Sprintf("cannot reach the pushsync API at %s: %v", c.baseURL(), unwrapURLError(ae.OrigErr()))}
		}
		msg := ae.Message()
		if ae.OrigErr() != nil {
			msg += ": " + ae.OrigErr().Error()
		}
		return &apiError{Type: ae.Code(), Message: msg}
	}
	return err
}

// progress redraws a one-line note of a long run's progress in place on
// stderr when it is a terminal; "" erases it. Elsewhere it writes nothing,
// so as not to clutter a log or a script's stderr.
func (c *cli) progress(format string, args ...any) {
	if c.tty {
		fmt.Fprintf(c.stderr, "\r"+format+"\x1b[K", args...)
	}
}

// confirm asks on the terminal before a command undoes what cannot be had
// back: what says what it is about to do, kept what stays when the answer
// is not yes. It asks only a person at a terminal (stdin and stderr both
// one) who did not give -yes; a script goes on unasked.
func (c *cli) confirm(v *cmdFlags, what, kept string) error {
	if v.yes || !c.tty || !c.stdinTTY {
		return nil
	}
	fmt.Fprintf(c.stderr, "%s? [y/N] ", what)
	answer, err := bufio.NewReader(c.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	if err != nil && answer == "" {
		fmt.Fprintln(c.stderr) // end the question's line
	}
	return &exitError{code: 1, msg: fmt.Sprintf("%s: not confirmed; %s (-yes skips the question)", v.cmd.name, kept)}
}

// printJSON writes raw JSON indented.
// segment escapes s as one segment of a path; "." and ".." too, which the
// request would otherwise send as a step in the path, to another one.
func segment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// decodeAnswer prints the API's answer raw as it is with -o json, and
// returns done; otherwise it decodes raw into v, what naming the answer in
// the error if it does not decode.
func (c *cli) decodeAnswer(raw []byte, what string, v any) (done bool, err error) {
	if c.output == "json" {
		return true, c.printJSON(raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("the API answered %s that does not decode: %w", what, err)
	}
	return false, nil
}

func (c *cli) printJSON(raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the API answered invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(buf.Bytes())
	return err
}

// printValue writes v as indented JSON.
func (c *cli) printValue(v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.printJSON(raw)
}

// printSDKJSON writes an AWS SDK output shape as the API's JSON, indented.
func (c *cli) printSDKJSON(v any) error {
	raw, err := jsonutil.BuildJSON(v)
	if err != nil {
		return err
	}
	return c.printJSON(raw)
}
