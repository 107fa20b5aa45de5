package bulk

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/pushsync/pushsync/sync/store"
)

// encode returns the messages of a dataset, each at most limit bytes of
// JSON: the whole Snapshot in one message when it fits, and otherwise
// parts that each carry the dataset's metadata, their Part and Parts, and
// a run of its records in order; a record too large for a part of its own
// has its value cut, at character boundaries, over consecutive parts (see
// Snapshot.Continued). Join puts the parts together again.
func encode(snap *Snapshot, limit int) ([][]byte, error) {
	whole, err := json.Marshal(snap)
	if err != nil {
		return nil, err
	}
	if len(whole) <= limit {
		return [][]byte{whole}, nil
	}
	// The metadata of a part, with the widest part numbers.
	head := *snap
	head.Part, head.Parts, head.Continued, head.Records = math.MaxInt32, math.MaxInt32, true, []store.Record{}
	meta, err := json.Marshal(&head)
	if err != nil {
		return nil, err
	}
	room := limit - len(meta) // for the records of a part and the commas between them
	tooSmall := func() error {
		return fmt.Errorf("a message of %d bytes (the NATS server's max_payload, or the stream's max message size, less the headers) cannot hold the metadata of dataset %s of %s and the key of one of its records; raise it",
			limit, snap.DatasetName, snap.IdentityID)
	}

	var (
		parts     [][]store.Record
		continued []bool
		cur       []store.Record
		used      int
	)
	flush := func(cont bool) {
		parts, continued = append(parts, cur), append(continued, cont)
		cur, used = nil, 0
	}
	add := func(rec store.Record, size int) {
		if len(cur) > 0 {
			used++
		}
		cur, used = append(cur, rec), used+size
	}
	free := func() int { // what a record may take of the part being filled
		if len(cur) > 0 {
			return room - used - 1
		}
		return room - used
	}
	for _, rec := range snap.Records {
		b, err := json.Marshal(&rec)
		if err != nil {
			return nil, err
		}
		size := len(b)
		if size <= free() {
			add(rec, size)
			continue
		}
		if size <= room {
			flush(false)
			add(rec, size)
			continue
		}
		// Too large for any part: the value is cut.
		if rec.Value == nil {
			return nil, tooSmall()
		}
		empty := rec
		empty.Value = new(string)
		b, err = json.Marshal(&empty)
		if err != nil {
			return nil, err
		}
		overhead := len(b)
		rest := *rec.Value
		for {
			n, cost := cut(rest, free()-overhead)
			if n == len(rest) {
				piece := rec
				piece.Value = &rest
				add(piece, overhead+cost)
				break
			}
			if n == 0 {
				if len(cur) == 0 {
					return nil, tooSmall()
				}
				flush(false)
				continue
			}
			v := rest[:n]
			piece := rec
			piece.Value = &v
			add(piece, overhead+cost)
			flush(true)
			rest = rest[n:]
		}
	}
	if len(cur) > 0 || len(parts) == 0 {
		flush(false)
	}

	out := make([][]byte, len(parts))
	for i, recs := range parts {
		p := *snap
		p.Part, p.Parts, p.Continued, p.Records = i+1, len(parts), continued[i], recs
		if p.Records == nil {
			p.Records = []store.Record{}
		}
		if out[i], err = json.Marshal(&p); err != nil {
			return nil, err
		}
		if len(out[i]) > limit {
			return nil, fmt.Errorf("part %d of dataset %s of %s encodes to %d bytes, over the limit of %d", i+1, snap.DatasetName, snap.IdentityID, len(out[i]), limit)
		}
	}
	return out, nil
}

// cut returns how many bytes of s, a whole number of characters, encode
// as a JSON string in at most room bytes (quotes excluded), and an upper
// bound of what they encode to.
func cut(s string, room int) (n, cost int) {
	for n < len(s) {
		r, size := utf8.DecodeRuneInString(s[n:])
		c := size
		switch {
		case r < 0x20 || r == '"' || r == '\\' || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029' || r == utf8.RuneError:
			c = 6 // the longest escape, \u00XX
		}
		if cost+c > room {
			break
		}
		n, cost = n+size, cost+c
	}
	return n, cost
}

// ErrParts is returned by Join for parts that do not make one dataset.
var ErrParts = errors.New("bulk: parts do not make one dataset")

// Join returns the dataset that the messages of one bulk publish of it
// make: a message that is the whole dataset (Parts 0) alone, or its Parts
// parts in order, with the values cut over two or more parts put together
// again. It returns an error wrapping ErrParts for anything else.
func Join(parts []Snapshot) (*Snapshot, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: none given", ErrParts)
	}
	first := parts[0]
	if first.Parts == 0 {
		if len(parts) != 1 {
			return nil, fmt.Errorf("%w: a whole dataset and %d more messages", ErrParts, len(parts)-1)
		}
		return &first, nil
	}
	if first.Parts != len(parts) {
		return nil, fmt.Errorf("%w: %d parts given of %d", ErrParts, len(parts), first.Parts)
	}
	out := first
	out.Part, out.Parts, out.Continued, out.Records = 0, 0, false, nil
	cont := false
	for i, p := range parts {
		if p.Part != i+1 || p.Parts != first.Parts || p.IdentityPoolID != first.IdentityPoolID || p.IdentityID != first.IdentityID ||
			p.DatasetName != first.DatasetName || p.SyncCount != first.SyncCount {
			return nil, fmt.Errorf("%w: message %d is part %d of %d of %s/%s at SyncCount %d, after part 1 of %d of %s/%s at SyncCount %d",
				ErrParts, i+1, p.Part, p.Parts, p.IdentityID, p.DatasetName, p.SyncCount, first.Parts, first.IdentityID, first.DatasetName, first.SyncCount)
		}
		recs := p.Records
		if cont {
			if len(recs) == 0 || recs[0].Value == nil || recs[0].Key != out.Records[len(out.Records)-1].Key {
				return nil, fmt.Errorf("%w: part %d does not go on with the value of record %q", ErrParts, p.Part, out.Records[len(out.Records)-1].Key)
			}
			last := &out.Records[len(out.Records)-1]
			v := *last.Value + *recs[0].Value
			last.Value = &v
			recs = recs[1:]
		}
		out.Records = append(out.Records, recs...)
		cont = p.Continued
		if cont && (len(out.Records) == 0 || out.Records[len(out.Records)-1].Value == nil) {
			return nil, fmt.Errorf("%w: part %d is marked continued but ends with no value", ErrParts, p.Part)
		}
	}
	if cont {
		return nil, fmt.Errorf("%w: the last part is marked continued", ErrParts)
	}
	if out.Records == nil {
		out.Records = []store.Record{}
	}
	return &out, nil
}
