package apnstest

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pushsync/pushsync/internal/h2server"
)

// Apple's reasons, as documented in "Handling notification responses from
// APNs".
const (
	reasonBadCollapseID           = "BadCollapseId"
	reasonBadDeviceToken          = "BadDeviceToken"
	reasonBadExpirationDate       = "BadExpirationDate"
	reasonBadMessageID            = "BadMessageId"
	reasonBadPriority             = "BadPriority"
	reasonDeviceTokenNotForTopic  = "DeviceTokenNotForTopic"
	reasonDuplicateHeaders        = "DuplicateHeaders"
	reasonInvalidPushType         = "InvalidPushType"
	reasonMissingDeviceToken      = "MissingDeviceToken"
	reasonMissingTopic            = "MissingTopic"
	reasonPayloadEmpty            = "PayloadEmpty"
	reasonTopicDisallowed         = "TopicDisallowed"
	reasonBadCertificate          = "BadCertificate"
	reasonExpiredProviderToken    = "ExpiredProviderToken"
	reasonInvalidProviderToken    = "InvalidProviderToken"
	reasonMissingProviderToken    = "MissingProviderToken"
	reasonBadPath                 = "BadPath"
	reasonMethodNotAllowed        = "MethodNotAllowed"
	reasonUnregistered            = "Unregistered"
	reasonPayloadTooLarge         = "PayloadTooLarge"
	reasonTooManyRequests         = "TooManyRequests"
	reasonTooManyTokenUpdates     = "TooManyProviderTokenUpdates"
	reasonInternalServerError     = "InternalServerError"
	reasonServiceUnavailable      = "ServiceUnavailable"
	devicePathPrefix              = "/3/device/"
	contentTypeJSON               = "application/json"
	headerApnsID                  = "Apns-Id"
	headerApnsUniqueID            = "Apns-Unique-Id"
	headerApnsTopic               = "Apns-Topic"
	headerApnsPushType            = "Apns-Push-Type"
	headerApnsPriority            = "Apns-Priority"
	headerApnsExpiration          = "Apns-Expiration"
	headerApnsCollapseID          = "Apns-Collapse-Id"
	headerAuthorization           = "Authorization"
	headerRetryAfter              = "Retry-After"
	headerContentType             = "Content-Type"
	pushTypeBackground            = "background"
	pushTypeVoIP                  = "voip"
	priorityImmediate             = 10
	providerTokenLifetimeInSecond = int64(ProviderTokenLifetime / time.Second)
)

// rejection is an error answer: HTTP status and APNs reason.
type rejection struct {
	status int
	reason string
}

// serveAPNs answers one request to the APNs API.
//
// Checks run in this order, the first failing one answering:
//  1. HTTP/2 (505 HTTP2Required, emulator-specific)
//  2. method POST (405 MethodNotAllowed)
//  3. path /3/device/{token} (404 BadPath; 400 MissingDeviceToken;
//     400 BadDeviceToken unless the token is hex of the configured length)
//  4. repeated apns-* or authorization headers (400 DuplicateHeaders)
//  5. apns-id is a UUID (400 BadMessageId)
//  6. apns-topic present (400 MissingTopic; a single-topic certificate
//     supplies a default)
//  7. apns-collapse-id at most 64 bytes (400 BadCollapseId)
//  8. apns-priority 1, 5 or 10 (400 BadPriority)
//  9. apns-push-type present and known (400 InvalidPushType)
//  10. background push not at priority 10, given or assumed for want of
//     apns-priority (400 BadPriority)
//  11. apns-expiration an integer (400 BadExpirationDate)
//  12. authentication: client certificate (403 BadCertificate) or provider
//     token (403 MissingProviderToken, InvalidProviderToken,
//     ExpiredProviderToken; 403 InvalidProviderToken for a token of
//     another team than the one the connection serves, that of its first
//     token; 429 TooManyProviderTokenUpdates for a new token on a
//     connection too soon after the last; a token passing
//     these lifts the connection's stream limit, whatever the answer),
//     then the topic (400 TopicDisallowed)
//  13. payload non-empty (400 PayloadEmpty), at most 4096 bytes or 5120 for
//     voip (413 PayloadTooLarge), a JSON object with an "aps" object
//     (400 BadRequest, emulator-specific)
//  14. configured failures: the device token's, then FailAll's
func (s *Server) serveAPNs(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	p := Push{Environment: s.env}
	rej, failure := s.check(r, &p)
	h := w.Header()
	if p.ApnsID == "" {
		p.ApnsID = newUUID()
	}
	h[headerApnsID] = []string{p.ApnsID}
	if s.env == EnvironmentDevelopment {
		h[headerApnsUniqueID] = []string{newUUID()}
	}
	switch {
	case failure != nil:
		s.writeFailure(w, failure)
	case rej.status != 0:
		s.reject(rej.reason)
		writeReason(w, rej.status, rej.reason)
	default:
		p.Header = r.Header
		p.ReceivedAt = time.Now()
		s.accept(&p)
		w.WriteHeader(http.StatusOK)
	}
}

// check validates the request, filling p as it goes. It returns the
// rejection, or a configured failure, or neither for success.
func (s *Server) check(r *http.Request, p *Push) (rejection, *Failure) {
	if r.ProtoMajor != 2 {
		return rejection{http.StatusHTTPVersionNotSupported, ReasonHTTP2Required}, nil
	}
	if r.Method != http.MethodPost {
		return rejection{http.StatusMethodNotAllowed, reasonMethodNotAllowed}, nil
	}
	token, ok := strings.CutPrefix(r.URL.Path, devicePathPrefix)
	if !ok || strings.IndexByte(token, '/') >= 0 {
		return rejection{http.StatusNotFound, reasonBadPath}, nil
	}
	if token == "" {
		return rejection{http.StatusBadRequest, reasonMissingDeviceToken}, nil
	}
	if !s.validDeviceToken(token) {
		return rejection{http.StatusBadRequest, reasonBadDeviceToken}, nil
	}
	p.DeviceToken = token

	hdr := r.Header
	// These headers may appear at most once.
	for _, k := range [...]string{
		headerApnsID, headerApnsTopic, headerApnsPushType, headerApnsPriority,
		headerApnsExpiration, headerApnsCollapseID, headerAuthorization,
	} {
		if len(hdr[k]) > 1 {
			return rejection{http.StatusBadRequest, reasonDuplicateHeaders}, nil
		}
	}
	if v, ok := hdr[headerApnsID]; ok {
		if !isUUID(v[0]) {
			return rejection{http.StatusBadRequest, reasonBadMessageID}, nil
		}
		p.ApnsID = v[0]
	}

	var cert *certEntry
	certAuth := r.TLS != nil && len(r.TLS.PeerCertificates) > 0
	if certAuth {
		cert = s.lookupCert(r.TLS.PeerCertificates[0].Raw)
	}
	p.Topic = first(hdr, headerApnsTopic)
	if p.Topic == "" {
		switch {
		case cert != nil && cert.defaultTopic != "":
			p.Topic = cert.defaultTopic
		case certAuth && cert == nil:
			// Unknown certificate: authentication answers BadCertificate.
		default:
			return rejection{http.StatusBadRequest, reasonMissingTopic}, nil
		}
	}
	p.CollapseID = first(hdr, headerApnsCollapseID)
	if len(p.CollapseID) > MaxCollapseIDSize {
		return rejection{http.StatusBadRequest, reasonBadCollapseID}, nil
	}
	if v, ok := hdr[headerApnsPriority]; ok {
		switch v[0] {
		case "1":
			p.Priority = 1
		case "5":
			p.Priority = 5
		case "10":
			p.Priority = 10
		default:
			return rejection{http.StatusBadRequest, reasonBadPriority}, nil
		}
	}
	p.PushType = first(hdr, headerApnsPushType)
	if !validPushType(p.PushType) {
		return rejection{http.StatusBadRequest, reasonInvalidPushType}, nil
	}
	// Without apns-priority APNs sends at once, as at 10.
	if p.PushType == pushTypeBackground && (p.Priority == priorityImmediate || p.Priority == 0) {
		return rejection{http.StatusBadRequest, reasonBadPriority}, nil
	}
	if v, ok := hdr[headerApnsExpiration]; ok {
		exp, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil {
			return rejection{http.StatusBadRequest, reasonBadExpirationDate}, nil
		}
		p.Expiration = exp
	}

	if certAuth {
		if cert == nil {
			return rejection{http.StatusForbidden, reasonBadCertificate}, nil
		}
		if !cert.topics.allows(p.Topic) {
			return rejection{http.StatusBadRequest, reasonTopicDisallowed}, nil
		}
		p.Auth = AuthCertificate
	} else {
		authz := first(hdr, headerAuthorization)
		if authz == "" {
			return rejection{http.StatusForbidden, reasonMissingProviderToken}, nil
		}
		vt, reason := s.verifyBearer(authz)
		if reason != "" {
			return rejection{http.StatusForbidden, reason}, nil
		}
		now := time.Now()
		if now.Unix()-vt.iat > providerTokenLifetimeInSecond {
			return rejection{http.StatusForbidden, reasonExpiredProviderToken}, nil
		}
		switch takeToken(r.Context(), vt, s.tokenEvery, now) {
		case "":
		case reasonTooManyTokenUpdates:
			return rejection{http.StatusTooManyRequests, reasonTooManyTokenUpdates}, nil
		default:
			return rejection{http.StatusForbidden, reasonInvalidProviderToken}, nil
		}
		// A valid provider token lifts the connection's stream limit.
		h2server.RaiseStreams(r.Context())
		if !vt.key.topics.allows(p.Topic) {
			return rejection{http.StatusBadRequest, reasonTopicDisallowed}, nil
		}
		p.Auth = AuthToken
		p.TeamID = vt.key.teamID
		p.KeyID = vt.key.keyID
	}

	limit := MaxPayloadSize
	if p.PushType == pushTypeVoIP {
		limit = MaxVoIPPayloadSize
	}
	body, tooLarge, err := readBody(r, limit)
	switch {
	case err != nil:
		return rejection{http.StatusBadRequest, ReasonBadRequest}, nil
	case tooLarge:
		return rejection{http.StatusRequestEntityTooLarge, reasonPayloadTooLarge}, nil
	case len(body) == 0:
		return rejection{http.StatusBadRequest, reasonPayloadEmpty}, nil
	case !hasApsObject(body):
		return rejection{http.StatusBadRequest, ReasonBadRequest}, nil
	}
	p.Payload = body

	if f := s.takeFailure(token); f != nil {
		return rejection{}, f
	}
	return rejection{}, nil
}

func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// validPushType reports whether t is one of Apple's apns-push-type values.
func validPushType(t string) bool {
	switch t {
	case "alert", "background", "location", "voip", "complication",
		"fileprovider", "mdm", "liveactivity", "pushtotalk":
		return true
	}
	return false
}

func (s *Server) validDeviceToken(t string) bool {
	if s.tokenLen > 0 && len(t) != s.tokenLen {
		return false
	}
	for i := 0; i < len(t); i++ {
		if !isHex(t[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isUUID reports whether s has the canonical 8-4-4-4-12 hexadecimal form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID in lower case.
func newUUID() string {
	const hex = "0123456789abcdef"
	var b [16]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
	return string(out[:])
}

// readBody reads at most limit bytes of the body, reporting whether it is
// longer than that.
func readBody(r *http.Request, limit int) ([]byte, bool, error) {
	if r.ContentLength > int64(limit) {
		return nil, true, nil
	}
	if r.ContentLength >= 0 {
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, false, err
		}
		return body, false, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, false, err
	}
	return body, len(body) > limit, nil
}

// hasApsObject reports whether b is a JSON object with an "aps" member whose
// value is an object. It does not allocate.
func hasApsObject(b []byte) bool {
	if !json.Valid(b) {
		return false
	}
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	for b[i] == '"' {
		end := skipString(b, i)
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		i = skipSpace(b, i+1) // past ':'
		if string(key) == "aps" {
			return b[i] == '{'
		}
		i = skipSpace(b, skipValue(b, i))
		if b[i] != ',' {
			break
		}
		i = skipSpace(b, i+1)
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// skipValue returns the index just past the valid JSON value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
	default:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
		}
		return i
	}
}

// writeReason writes an error answer with a fixed reason.
func writeReason(w http.ResponseWriter, status int, reason string) {
	w.Header()[headerContentType] = []string{contentTypeJSON}
	w.WriteHeader(status)
	body := make([]byte, 0, len(reason)+13)
	body = append(body, `{"reason":"`...)
	body = append(body, reason...)
	body = append(body, `"}`...)
	_, _ = w.Write(body)
}

// writeFailure writes a configured failure and counts it.
func (s *Server) writeFailure(w http.ResponseWriter, f *Failure) {
	status, reason := f.answer()
	s.reject(reason)
	out := struct {
		Reason    string `json:"reason"`
		Timestamp *int64 `json:"timestamp,omitempty"`
	}{Reason: reason}
	if status == http.StatusGone {
		at := f.Timestamp
		if at.IsZero() {
			at = time.Now()
		}
		ms := at.UnixMilli()
		out.Timestamp = &ms
	}
	if f.RetryAfter > 0 {
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header()[headerRetryAfter] = []string{strconv.FormatInt(secs, 10)}
	}
	body, _ := json.Marshal(out)
	w.Header()[headerContentType] = []string{contentTypeJSON}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
