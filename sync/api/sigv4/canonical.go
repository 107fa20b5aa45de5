package sigv4

import (
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// requestPath returns the request path exactly as the client sent it, still
// percent-encoded. On a server request that is the path part of RequestURI;
// on a client request (tests, proxies) it is what the aws-sdk-go v1 signer
// reads: the path of URL.Opaque ("//host/path") if set, else
// URL.EscapedPath(). It never uses the decoded URL.Path.
func requestPath(r *http.Request) string {
	if p, ok := pathOfRequestURI(r.RequestURI); ok {
		return p
	}
	if r.URL == nil {
		return "/"
	}
	var p string
	if o := r.URL.Opaque; o != "" {
		if parts := strings.Split(o, "/"); strings.HasPrefix(o, "//") && len(parts) >= 3 {
			p = "/" + strings.Join(parts[3:], "/")
		} else {
			p = o
		}
	} else {
		p = r.URL.EscapedPath()
	}
	if p == "" {
		p = "/"
	}
	return p
}

// pathOfRequestURI extracts the raw path from an origin-form ("/p?q") or
// absolute-form ("http://h/p?q") request target.
func pathOfRequestURI(uri string) (string, bool) {
	if uri == "" {
		return "", false
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if strings.HasPrefix(uri, "/") {
		return uri, true
	}
	if i := strings.Index(uri, "://"); i > 0 {
		rest := uri[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:], true
		}
		return "/", true
	}
	return "", false
}

// canonicalURI URI-encodes the already-encoded path once more, keeping '/'
// and the RFC 3986 unreserved characters, as aws-sdk-go v1 does with
// rest.EscapePath(path, false) for every service but S3: "%3A" becomes
// "%253A".
func canonicalURI(rawPath string) string {
	if rawPath == "" {
		return "/"
	}
	return uriEncode(rawPath, false)
}

const upperHex = "0123456789ABCDEF"

// uriEncode percent-encodes every byte outside the unreserved set
// (A-Z a-z 0-9 - . _ ~), keeping '/' unless encodeSlash is set.
func uriEncode(s string, encodeSlash bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i], encodeSlash) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c, encodeSlash) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		}
	}
	return b.String()
}

func keep(c byte, encodeSlash bool) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && !encodeSlash)
}

// canonicalQuery renders decoded query values the way the v1 signer does
// (url.Values.Encode with "+" turned into "%20"): keys sorted, the values of
// a key sorted, key and value encoded with the unreserved set, "k=v" pairs
// joined with '&'.
func canonicalQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		ek := uriEncode(k, true)
		for _, v := range vs {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(ek)
			b.WriteByte('=')
			b.WriteString(uriEncode(v, true))
		}
	}
	return b.String()
}

// requestHost returns the host the request was sent to: r.Host (Go moves
// the Host header there), else the URL's host on a client request.
func requestHost(r *http.Request) string {
	if r.Host == "" && r.URL != nil {
		return r.URL.Host
	}
	return r.Host
}

// hostWithoutPort returns host without its ":port", or "" if it has none.
func hostWithoutPort(host string) string {
	h, _, err := net.SplitHostPort(host)
	if err != nil || h == "" {
		return ""
	}
	return h
}

// canonicalHeaders builds the "name:value\n" lines of the signed headers.
// Values of a header are trimmed (strings.TrimSpace) and joined with ',';
// then each line is trimmed of spaces and inner runs of spaces collapse to
// one, as in the v1 signer's stripExcessSpaces. host is the value of the
// host header (see requestHost), content-length comes from the header if
// present, else from r.ContentLength (or the body length when that is
// unknown). A signed header the request lacks is an IncompleteSignature
// error.
func canonicalHeaders(r *http.Request, signed []string, bodyLen int, host string) (string, error) {
	lower := make(map[string][]string, len(r.Header))
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		lower[lk] = append(lower[lk], vs...)
	}
	var b strings.Builder
	for _, name := range signed {
		var value string
		switch name {
		case "host":
			value = host
			if value == "" {
				return "", newError(ErrIncompleteSignature, "the signed header 'host' is missing")
			}
		case "authorization":
			return "", newError(ErrIncompleteSignature, "the Authorization header cannot be a signed header")
		default:
			vs, ok := lower[name]
			if !ok && name == "content-length" {
				// Go keeps only r.ContentLength on client requests; on a
				// chunked server request the body length is the value.
				n := r.ContentLength
				if n < 0 {
					n = int64(bodyLen)
				}
				vs, ok = []string{strconv.FormatInt(n, 10)}, true
			}
			if !ok {
				return "", newError(ErrIncompleteSignature, "the signed header '%s' is missing from the request", clip(name))
			}
			trimmed := make([]string, len(vs))
			for i, v := range vs {
				trimmed[i] = strings.TrimSpace(v)
			}
			value = strings.Join(trimmed, ",")
		}
		b.WriteString(stripExcessSpaces(name + ":" + value))
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// stripExcessSpaces trims leading and trailing spaces and collapses every
// run of spaces to one space (only ' ', as the v1 signer does).
func stripExcessSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	prevSpace := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			if prevSpace {
				continue
			}
			prevSpace = true
		} else {
			prevSpace = false
		}
		b.WriteByte(c)
	}
	return b.String()
}
