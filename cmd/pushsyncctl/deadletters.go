package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
)

type deadLetter struct {
	Sequence        uint64          `json:"sequence"`
	OriginalSubject string          `json:"originalSubject"`
	Reason          string          `json:"reason"`
	Deliveries      uint64          `json:"deliveries"`
	FailedAt        string          `json:"failedAt"`
	Devices         []string        `json:"devices"`
	Event           json.RawMessage `json:"event"`
}

func (c *cli) listDeadLetters(after, limit int64) ([]deadLetter, []byte, error) {
	raw, err := c.admin(http.MethodGet, fmt.Sprintf("/admin/v1/deadletters?after=%d&limit=%d", after, limit), nil)
	if err != nil {
		return nil, nil, err
	}
	var list struct {
		DeadLetters []deadLetter `json:"deadLetters"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil, fmt.Errorf("the API answered a dead-letter list that does not decode: %w", err)
	}
	return list.DeadLetters, raw, nil
}

// deadLetterList prints dead letters, one line each.
func deadLetterList(c *cli, v *cmdFlags) error {
	letters, raw, err := c.listDeadLetters(v.after, v.limit)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(raw)
	}
	if len(letters) == 0 {
		msg := "no dead letters"
		if v.after > 0 {
			// Not "none": there may be some up to -after.
			msg += fmt.Sprintf(" after %d", v.after)
		}
		_, err := fmt.Fprintln(c.stdout, msg)
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tFAILED\tDELIVERIES\tREASON\tNOT PUSHED\tEVENT")
	for _, l := range letters {
		var ev struct {
			IdentityPoolID string `json:"identityPoolId"`
			IdentityID     string `json:"identityId"`
			DatasetName    string `json:"datasetName"`
			SyncCount      int64  `json:"syncCount"`
		}
		summary := string(l.Event)
		if json.Unmarshal(l.Event, &ev) == nil && ev.DatasetName != "" {
			summary = fmt.Sprintf("%s %s %s@%d", ev.IdentityPoolID, ev.IdentityID, ev.DatasetName, ev.SyncCount)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", l.Sequence, l.FailedAt, l.Deliveries, l.Reason, devicesSummary(l.Devices), summary)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if int64(len(letters)) < v.limit {
		return nil
	}
	// A full page: say whether the list goes on, so that the first page
	// is not taken for every dead letter there is.
	last := int64(letters[len(letters)-1].Sequence)
	next, _, err := c.listDeadLetters(last, 1)
	if err != nil || len(next) == 0 {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "more dead letters follow; list them with: pushsyncctl deadletter list -after %d\n", last)
	return err
}

// devicesSummary shows the devices a dead letter's event did not reach:
// the first three, and how many more (deadletter list -o json has them
// all); "-" for none named.
func devicesSummary(devices []string) string {
	const shown = 3
	switch {
	case len(devices) == 0:
		return "-"
	case len(devices) <= shown:
		return strings.Join(devices, ",")
	}
	return fmt.Sprintf("%s (+%d more)", strings.Join(devices[:shown], ","), len(devices)-shown)
}

// parseSeq reads the SEQ argument: a dead letter's sequence number.
func parseSeq(v *cmdFlags) (uint64, error) {
	seq, err := strconv.ParseUint(v.arg, 10, 64)
	if err != nil || seq == 0 {
		return 0, &usageError{cmd: v.cmd, msg: fmt.Sprintf("SEQ must be a dead letter's sequence number, a positive integer, got %q", v.arg)}
	}
	return seq, nil
}

// deadLetterReplay replays one dead letter, or every one with -all.
func deadLetterReplay(c *cli, v *cmdFlags) error {
	switch {
	case v.all && v.arg != "":
		return &usageError{cmd: v.cmd, msg: "deadletter replay takes SEQ or -all, not both"}
	case v.all:
		return c.replayAll()
	case v.arg == "":
		return &usageError{cmd: v.cmd, msg: "deadletter replay needs SEQ or -all"}
	}
	seq, err := parseSeq(v)
	if err != nil {
		return err
	}
	if err := c.replayDeadLetter(seq); err != nil {
		return err
	}
	if c.output == "json" {
		return c.printValue(&replayReport{Replayed: []uint64{seq}, Skipped: []replayFailure{}, Failed: []replayFailure{}, NotTried: []uint64{}})
	}
	_, err = fmt.Fprintf(c.stdout, "replayed dead letter %d\n", seq)
	return err
}

// replayDeadLetter asks the API to publish a dead letter's event again.
func (c *cli) replayDeadLetter(seq uint64) error {
	_, err := c.admin(http.MethodPost, fmt.Sprintf("/admin/v1/deadletters/%d/replay", seq), nil)
	return err
}

// replayFailure is a dead letter a bulk replay skipped or failed to
// replay, and the API's answer.
type replayFailure struct {
	Sequence uint64 `json:"sequence"`
	Error    string `json:"error"`
}

// replayReport is what deadletter replay did: the dead letters replayed,
// those skipped because they were gone (discarded or replayed since they
// were listed), those that failed and, when a failure stopped the run,
// those not tried.
type replayReport struct {
	Replayed []uint64        `json:"replayed"`
	Skipped  []replayFailure `json:"skipped"`
	Failed   []replayFailure `json:"failed"`
	NotTried []uint64        `json:"notTried"`
	Stopped  bool            `json:"stopped"`
}

// replayAll replays every dead letter listed when it starts. A dead letter
// gone meanwhile is skipped and one the API refuses fails alone; any other
// failure (the API unreachable, the credentials refused, a server error)
// would fail every dead letter after it too, so it stops the run. It
// always reports what it did, and fails if any dead letter failed.
func (c *cli) replayAll() error {
	var seqs []uint64
	for after := int64(0); ; {
		letters, _, err := c.listDeadLetters(after, 1000)
		if err != nil {
			return err
		}
		for _, l := range letters {
			seqs = append(seqs, l.Sequence)
			after = int64(l.Sequence)
		}
		if len(letters) < 1000 {
			break
		}
	}
	rep := &replayReport{Replayed: []uint64{}, Skipped: []replayFailure{}, Failed: []replayFailure{}, NotTried: []uint64{}}
	for i, seq := range seqs {
		c.progress("replaying dead letters: %d of %d", i, len(seqs))
		err := c.replayDeadLetter(seq)
		var ae *apiError
		switch {
		case err == nil:
			rep.Replayed = append(rep.Replayed, seq)
			continue
		case errors.As(err, &ae) && ae.Type == "ResourceNotFoundException":
			rep.Skipped = append(rep.Skipped, replayFailure{seq, err.Error()})
			continue
		}
		rep.Failed = append(rep.Failed, replayFailure{seq, err.Error()})
		// The admin API answers InvalidParameterException about the
		// sequence it was given; every other answer says nothing of
		// this dead letter and would come again for the next.
		if !errors.As(err, &ae) || ae.Type != "InvalidParameterException" {
			rep.Stopped, rep.NotTried = true, seqs[i+1:]
			break
		}
	}
	c.progress("")
	if err := c.printReplayReport(rep); err != nil {
		return err
	}
	if len(rep.NotTried) > 0 {
		last := rep.Failed[len(rep.Failed)-1]
		return &exitError{code: 1, msg: fmt.Sprintf("replay stopped at dead letter %d with %d not tried: %s would fail them too; once the cause is fixed, run deadletter replay -all again",
			last.Sequence, len(rep.NotTried), last.Error)}
	}
	if len(rep.Failed) > 0 {
		failed := make([]string, len(rep.Failed))
		for i, f := range rep.Failed {
			failed[i] = fmt.Sprint(f.Sequence)
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%d dead letter(s) failed to replay: %s", len(rep.Failed), strings.Join(failed, ", "))}
	}
	return nil
}

// printReplayReport prints what a bulk replay did: the counts, then each
// dead letter skipped or failed with the API's answer.
func (c *cli) printReplayReport(rep *replayReport) error {
	if c.output == "json" {
		return c.printValue(rep)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "replayed %d dead letter(s), skipped %d, failed %d", len(rep.Replayed), len(rep.Skipped), len(rep.Failed))
	if len(rep.NotTried) > 0 {
		fmt.Fprintf(&b, ", not tried %d", len(rep.NotTried))
	}
	b.WriteString("\n")
	for _, s := range rep.Skipped {
		fmt.Fprintf(&b, "skipped %d: gone since it was listed (discarded or replayed meanwhile): %s\n", s.Sequence, s.Error)
	}
	for _, f := range rep.Failed {
		fmt.Fprintf(&b, "failed %d: %s\n", f.Sequence, f.Error)
	}
	_, err := io.WriteString(c.stdout, b.String())
	return err
}

// deadLetterDiscard drops one dead letter.
func deadLetterDiscard(c *cli, v *cmdFlags) error {
	seq, err := parseSeq(v)
	if err != nil {
		return err
	}
	if err := c.confirm(v, fmt.Sprintf("discard dead letter %d, its event never pushed", seq), "the dead letter is kept"); err != nil {
		return err
	}
	if _, err := c.admin(http.MethodDelete, fmt.Sprintf("/admin/v1/deadletters/%d", seq), nil); err != nil {
		return err
	}
	if c.output == "json" {
		return c.printValue(map[string][]uint64{"discarded": {seq}})
	}
	_, err = fmt.Fprintf(c.stdout, "discarded dead letter %d\n", seq)
	return err
}
