package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// resealTimeout bounds secrets reseal, which goes through every identity
// credential in Redis.
const resealTimeout = 10 * time.Minute

// sealedRecords and secretsReport mirror the admin API's answer.
type sealedRecords struct {
	Total           int      `json:"total"`
	Current         int      `json:"current"`
	Secondary       int      `json:"secondary"`
	Resealed        int      `json:"resealed"`
	Unreadable      int      `json:"unreadable"`
	UnreadableNames []string `json:"unreadableNames"`
}

type secretsReport struct {
	SecondaryKey bool          `json:"secondaryKey"`
	Apps         sealedRecords `json:"apps"`
	Credentials  sealedRecords `json:"credentials"`
}

// secretsStatus shows under which master key the stored secrets are.
func secretsStatus(c *cli, _ *cmdFlags) error {
	raw, err := c.admin(http.MethodGet, "/admin/v1/secrets", nil)
	if err != nil {
		return err
	}
	return c.printSecrets(raw, false)
}

// secretsReseal moves the secrets under the secondary master key to the
// current one.
func secretsReseal(c *cli, _ *cmdFlags) error {
	c.httpClient = &http.Client{Timeout: resealTimeout}
	raw, err := c.admin(http.MethodPost, "/admin/v1/secrets/reseal", nil)
	if err != nil {
		return err
	}
	if err := c.printSecrets(raw, true); err != nil {
		return err
	}
	// A reseal that could not move everything off the secondary key has
	// not done step 3 of a rotation: a script must not go on to remove
	// that key.
	var rep secretsReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("the API answered a secrets report that does not decode: %w", err)
	}
	switch left := rep.Apps.Secondary + rep.Credentials.Secondary; {
	case !rep.SecondaryKey:
		return &exitError{code: 1, msg: "nothing was resealed: the API process that answered has no secrets.secondary_master_key; run secrets reseal against processes at step 2 of the rotation (docs/deploy.md, \"Rotating the master key\")"}
	case left > 0:
		return &exitError{code: 1, msg: fmt.Sprintf("%d records are still under the secondary master key; run secrets reseal again once every process has the new master_key", left)}
	}
	return nil
}

// printSecrets prints a report as a table and says what is left to do.
func (c *cli) printSecrets(raw []byte, resealed bool) error {
	var rep secretsReport
	if done, err := c.decodeAnswer(raw, "a secrets report", &rep); done || err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	head := "RECORDS\tTOTAL\tCURRENT KEY\tSECONDARY KEY\tUNREADABLE"
	if resealed {
		head += "\tRESEALED"
	}
	fmt.Fprintln(tw, head)
	for _, r := range []struct {
		name string
		n    sealedRecords
	}{{"apps", rep.Apps}, {"credentials", rep.Credentials}} {
		line := fmt.Sprintf("%s\t%d\t%d\t%d\t%d", r.name, r.n.Total, r.n.Current, r.n.Secondary, r.n.Unreadable)
		if resealed {
			line += fmt.Sprintf("\t%d", r.n.Resealed)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if names := rep.Apps.UnreadableNames; len(names) > 0 {
		fmt.Fprintf(c.stdout, "apps no configured key opens: %s (register their credentials again with app rotate)\n", strings.Join(names, ", "))
	}
	if n := rep.Credentials.Unreadable; n > 0 {
		fmt.Fprintf(c.stdout, "%d identity credentials no configured key opens; they stop working and expire on their own\n", n)
	}
	// The answering process's keys: during a rollout another process may
	// have other ones.
	var err error
	switch left := rep.Apps.Secondary + rep.Credentials.Secondary; {
	case !rep.SecondaryKey:
		_, err = fmt.Fprintln(c.stdout, "the API process that answered has no secrets.secondary_master_key")
	case left > 0:
		_, err = fmt.Fprintf(c.stdout, "%d records are under the secondary master key: once every process has the new master_key, run pushsyncctl secrets reseal\n", left)
	default:
		_, err = fmt.Fprintln(c.stdout, "no record is under the secondary master key")
	}
	return err
}
