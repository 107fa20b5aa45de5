// Package h2wire holds what pushsync's HTTP/2 client and the emulators'
// HTTP/2 server both write.
package h2wire

import "golang.org/x/net/http2"

// WriteHeaderBlock writes an encoded header block for a stream as a
// HEADERS frame followed by as many CONTINUATION frames as frames of at
// most maxFrame bytes need; endStream sets END_STREAM on the HEADERS.
func WriteHeaderBlock(fr *http2.Framer, streamID uint32, block []byte, maxFrame int, endStream bool) error {
	for first := true; first || len(block) > 0; first = false {
		chunk := block[:min(len(block), maxFrame)]
		block = block[len(chunk):]
		var err error
		if first {
			err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: streamID, BlockFragment: chunk,
				EndStream: endStream, EndHeaders: len(block) == 0})
		} else {
			err = fr.WriteContinuation(streamID, len(block) == 0, chunk)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CachedName returns convert(name), remembered in m, which keeps the first
// 64 names: the header names one peer uses are few.
func CachedName(m map[string]string, name string, convert func(string) string) string {
	v, ok := m[name]
	if !ok {
		v = convert(name)
		if len(m) < 64 {
			m[name] = v
		}
	}
	return v
}
