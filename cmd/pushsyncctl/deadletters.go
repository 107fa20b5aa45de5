package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"text/tabwriter"
)

type deadLetter struct {
	Sequence        uint64          `json:"sequence"`
	OriginalSubject string          `json:"originalSubject"`
	Reason          string          `json:"reason"`
	Deliveries      uint64          `json:"deliveries"`
	FailedAt        string          `json:"failedAt"`
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
		_, err := fmt.Fprintln(c.stdout, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tFAILED\tDELIVERIES\tREASON\tEVENT")
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
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", l.Sequence, l.FailedAt, l.Deliveries, l.Reason, summary)
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
	seqs := []uint64{}
	switch {
	case v.all && v.arg != "":
		return &usageError{cmd: v.cmd, msg: "deadletter replay takes SEQ or -all, not both"}
	case v.all:
		var after int64
		for {
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
	case v.arg == "":
		return &usageError{cmd: v.cmd, msg: "deadletter replay needs SEQ or -all"}
	default:
		seq, err := parseSeq(v)
		if err != nil {
			return err
		}
		seqs = append(seqs, seq)
	}
	for _, seq := range seqs {
		if _, err := c.admin(http.MethodPost, fmt.Sprintf("/admin/v1/deadletters/%d/replay", seq), nil); err != nil {
			return err
		}
	}
	if c.output == "json" {
		return c.printValue(map[string][]uint64{"replayed": seqs})
	}
	_, err := fmt.Fprintf(c.stdout, "replayed %d dead letter(s)\n", len(seqs))
	return err
}

// deadLetterDiscard drops one dead letter.
func deadLetterDiscard(c *cli, v *cmdFlags) error {
	seq, err := parseSeq(v)
	if err != nil {
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
