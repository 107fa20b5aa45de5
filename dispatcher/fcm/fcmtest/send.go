package fcmtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxPayloadBytes is FCM's limit on a message's payload: the bytes of
	// its data keys and values (top-level and android) plus its
	// notification blocks as sent.
	MaxPayloadBytes = 4096
	// MaxTopicPayloadBytes is FCM's limit on the payload, counted as for
	// MaxPayloadBytes, of a message sent to a topic.
	MaxTopicPayloadBytes = 2048
	// MaxTTL is the largest android.ttl FCM accepts, four weeks.
	MaxTTL = 2419200 * time.Second
	// MinTokenLength is the length under which the emulator takes a
	// registration token for malformed (see WithTokenCheck); those FCM
	// issues are 140 to 170 characters long.
	MinTokenLength = 20

	maxTTLSeconds = 2419200
	maxBodyBytes  = 1 << 20

	fcmErrorType   = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
	badRequestType = "type.googleapis.com/google.rpc.BadRequest"
	errorInfoType  = "type.googleapis.com/google.rpc.ErrorInfo"

	contentTypeJSON = "application/json; charset=UTF-8"
)

// rpcStatus is a google.rpc.Status as Google's JSON APIs render it.
type rpcStatus struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Status  string      `json:"status"`
	Details []rpcDetail `json:"details,omitempty"`
}

// rpcDetail is one entry of google.rpc.Status.details: an FcmError, a
// google.rpc.BadRequest or a google.rpc.ErrorInfo.
type rpcDetail struct {
	Type            string            `json:"@type"`
	ErrorCode       string            `json:"errorCode,omitempty"`
	FieldViolations []fieldViolation  `json:"fieldViolations,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	Domain          string            `json:"domain,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
}

type fieldViolation struct {
	Field       string `json:"field,omitempty"`
	Description string `json:"description"`
}

// apiError is a rejected send request.
type apiError struct {
	httpStatus int
	status     string
	message    string
	errorCode  string // FcmError detail, "" = none
	field      string // BadRequest field violation
	badRequest bool   // add a BadRequest detail
	retryAfter time.Duration
}

// parseError is a request FCM's JSON layer rejects: 400 INVALID_ARGUMENT with
// only a google.rpc.BadRequest detail.
func parseError(field, msg string) *apiError {
	return &apiError{httpStatus: 400, status: "INVALID_ARGUMENT", message: msg, field: field, badRequest: true}
}

// invalidArgument is a request FCM itself rejects: 400 INVALID_ARGUMENT with
// an FcmError INVALID_ARGUMENT detail and a google.rpc.BadRequest detail.
func invalidArgument(field, msg string) *apiError {
	return &apiError{httpStatus: 400, status: "INVALID_ARGUMENT", message: msg,
		errorCode: ErrorCodeInvalidArgument, field: field, badRequest: true}
}

func failureError(f Failure) *apiError {
	return &apiError{httpStatus: f.HTTPStatus, status: f.Status, message: f.Message,
		errorCode: f.ErrorCode, field: f.Field, badRequest: f.Field != "", retryAfter: f.RetryAfter}
}

func (e *apiError) write(w http.ResponseWriter) {
	var details []rpcDetail
	if e.errorCode != "" {
		details = append(details, rpcDetail{Type: fcmErrorType, ErrorCode: e.errorCode})
	}
	if e.badRequest {
		details = append(details, rpcDetail{Type: badRequestType,
			FieldViolations: []fieldViolation{{Field: e.field, Description: e.message}}})
	}
	writeStatus(w, e.httpStatus, e.status, e.message, details, e.retryAfter)
}

// writeStatus writes a google.rpc.Status error body, indented as Google's
// front ends do.
func writeStatus(w http.ResponseWriter, code int, status, msg string, details []rpcDetail, retryAfter time.Duration) {
	b, _ := json.MarshalIndent(struct {
		Error rpcStatus `json:"error"`
	}{rpcStatus{Code: code, Message: msg, Status: status, Details: details}}, "", "  ")
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// sendRequest is the body of messages:send.
type sendRequest struct {
	ValidateOnly      bool            `json:"validate_only"`
	ValidateOnlyCamel bool            `json:"validateOnly"`
	Message           json.RawMessage `json:"message"`
}

// wireMessage is google.firebase.fcm.v1.Message; nested objects the emulator
// does not inspect are kept raw.
type wireMessage struct {
	Name         string          `json:"name"`
	Data         json.RawMessage `json:"data"`
	Notification json.RawMessage `json:"notification"`
	Android      json.RawMessage `json:"android"`
	Webpush      json.RawMessage `json:"webpush"`
	APNS         json.RawMessage `json:"apns"`
	FCMOptions   json.RawMessage `json:"fcm_options"`
	FCMOptionsC  json.RawMessage `json:"fcmOptions"`
	Token        string          `json:"token"`
	Topic        string          `json:"topic"`
	Condition    string          `json:"condition"`
}

// wireAndroid is google.firebase.fcm.v1.AndroidConfig.
type wireAndroid struct {
	CollapseKey             string          `json:"collapse_key"`
	CollapseKeyC            string          `json:"collapseKey"`
	Priority                string          `json:"priority"`
	TTL                     *string         `json:"ttl"`
	RestrictedPackageName   string          `json:"restricted_package_name"`
	RestrictedPackageNameC  string          `json:"restrictedPackageName"`
	Data                    json.RawMessage `json:"data"`
	Notification            json.RawMessage `json:"notification"`
	FCMOptions              json.RawMessage `json:"fcm_options"`
	FCMOptionsC             json.RawMessage `json:"fcmOptions"`
	DirectBootOK            bool            `json:"direct_boot_ok"`
	DirectBootOKC           bool            `json:"directBootOk"`
	BandwidthConstrainedOK  bool            `json:"bandwidth_constrained_ok"`
	BandwidthConstrainedOKC bool            `json:"bandwidthConstrainedOk"`
	RestrictedSatelliteOK   bool            `json:"restricted_satellite_ok"`
	RestrictedSatelliteOKC  bool            `json:"restrictedSatelliteOk"`
}

// sendProject returns the {project} of /v1/projects/{project}/messages:send.
func sendProject(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v1/projects/")
	if !ok {
		return "", false
	}
	project, ok := strings.CutSuffix(rest, "/messages:send")
	if !ok || project == "" || strings.Contains(project, "/") {
		return "", false
	}
	return project, true
}

// serveSend implements POST /v1/projects/{project}/messages:send.
func (s *Server) serveSend(w http.ResponseWriter, r *http.Request) {
	project, ok := sendProject(r.URL.Path)
	if !ok || r.Method != http.MethodPost {
		writeStatus(w, http.StatusNotFound, "NOT_FOUND", "Method not found.", nil, 0)
		return
	}
	s.stats.requests.Add(1)
	if r.ProtoMajor == 2 {
		s.stats.http2.Add(1)
	}
	now := time.Now()

	// Authentication, then authorization, as Google's front end checks them
	// before the body.
	authz := r.Header.Get("Authorization")
	if len(authz) <= 7 || !strings.EqualFold(authz[:7], "Bearer ") {
		s.reject(w, &apiError{httpStatus: 401, status: "UNAUTHENTICATED", message: msgUnauthenticated})
		return
	}
	at, ok := s.lookupToken(strings.TrimSpace(authz[7:]), now)
	if !ok {
		s.reject(w, &apiError{httpStatus: 401, status: "UNAUTHENTICATED", message: msgUnauthenticated})
		return
	}
	if !at.canSend {
		// Google's front end checks the token's scopes before the
		// caller's permission on the project.
		s.stats.countError("PERMISSION_DENIED")
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="`+SendScope+" "+CloudPlatformScope+`"`)
		writeStatus(w, http.StatusForbidden, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
			[]rpcDetail{{Type: errorInfoType, Reason: "ACCESS_TOKEN_SCOPE_INSUFFICIENT", Domain: "googleapis.com",
				Metadata: map[string]string{"method": "google.firebase.fcm.v1.FcmService.SendMessage", "service": "fcm.googleapis.com"}}}, 0)
		return
	}
	if at.projectID != project {
		// The token's service account has no role on the project (FCM's
		// SENDER_ID_MISMATCH is about a registration token of another
		// project, not about the caller).
		s.reject(w, &apiError{httpStatus: 403, status: "PERMISSION_DENIED", message: "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/" +
			project + "' (or it may not exist)."})
		return
	}

	buf := s.getBuffer()
	defer s.bufPool.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, maxBodyBytes+1)); err != nil {
		s.reject(w, parseError("", "Invalid JSON payload received. Could not read the request body."))
		return
	}
	if buf.Len() > maxBodyBytes {
		s.reject(w, invalidArgument("message", "Message is too big"))
		return
	}

	var req sendRequest
	if e := decodeStrict(buf.Bytes(), &req, "", "type.googleapis.com/google.firebase.fcm.v1.SendMessageRequest", knownRequestKey); e != nil {
		s.reject(w, e)
		return
	}
	validateOnly := req.ValidateOnly || req.ValidateOnlyCamel
	msg, data, e := validateMessage(req.Message)
	if e != nil {
		s.reject(w, e)
		return
	}

	if f, ok := s.takeFailure(msg.Token); ok {
		s.reject(w, failureError(f))
		return
	}
	if msg.Token != "" && !s.opts.anyToken && !wellFormedToken(msg.Token) {
		s.reject(w, failureError(InvalidRegistration()))
		return
	}

	name := s.messageName(project, now)
	if s.opts.record || s.opts.onPush != nil {
		p := Push{
			ProjectID:    project,
			Token:        msg.Token,
			Topic:        msg.Topic,
			Condition:    msg.Condition,
			Data:         data,
			Android:      msg.Android,
			Message:      req.Message,
			Name:         name,
			ValidateOnly: validateOnly,
			Header:       r.Header.Clone(),
			Proto:        r.Proto,
			ProtoMajor:   r.ProtoMajor,
			ReceivedAt:   now,
		}
		if s.opts.record {
			s.record(p)
		}
		if s.opts.onPush != nil && !validateOnly {
			s.opts.onPush(p)
		}
	}

	s.stats.accepted.Add(1)
	s.stats.ok.Add(1)
	if validateOnly {
		s.stats.dryRuns.Add(1)
	}
	out := buf.Bytes()[:0] // the body has been decoded into copies
	out = append(out, "{\n  \"name\": "...)
	out = appendJSONString(out, name)
	out = append(out, "\n}\n"...)
	w.Header()["Content-Type"] = []string{contentTypeJSON}
	_, _ = w.Write(out)
}

func (s *Server) reject(w http.ResponseWriter, e *apiError) {
	s.stats.countError(e.status)
	e.write(w)
}

func (s *Server) getBuffer() *bytes.Buffer {
	if b, ok := s.bufPool.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return bytes.NewBuffer(make([]byte, 0, 1024))
}

// messageName returns projects/{project}/messages/{id} with an id shaped
// like FCM's, such as 0:1700000000000000%31bd1c9631bd1c96.
func (s *Server) messageName(project string, now time.Time) string {
	seq := s.msgSeq.Add(1)
	b := make([]byte, 0, len(project)+64)
	b = append(b, "projects/"...)
	b = append(b, project...)
	b = append(b, "/messages/0:"...)
	b = strconv.AppendInt(b, now.UnixMicro(), 10)
	b = append(b, '%')
	h := seq*0x9e3779b97f4a7c15 ^ uint64(now.UnixNano())
	const hexDigits = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, hexDigits[(h>>uint(i))&0xf])
	}
	return string(b)
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeStrict decodes the JSON value b into v and rejects keys known does
// not accept, as FCM's proto JSON parser does (case-sensitively). loc is the
// proto path of the value ("" for the request body) and typeName its proto
// type, for error messages.
func decodeStrict(b []byte, v any, loc, typeName string, known func([]byte) bool) *apiError {
	err := json.Unmarshal(b, v)
	if err == nil {
		if name, ok := firstUnknownKey(b, known); ok {
			at := ""
			if loc != "" {
				at = " at '" + loc + "'"
			}
			return parseError(loc, "Invalid JSON payload received. Unknown name "+strconv.Quote(name)+at+": Cannot find field.")
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field, ptype := loc, typeName
		if typeErr.Field != "" {
			field = joinPath(loc, typeErr.Field)
			ptype = protoScalarType(typeErr.Type.Kind().String())
		}
		return parseError(field, "Invalid value at '"+field+"' ("+ptype+"), "+literalAt(b, typeErr))
	}
	return parseError("", "Invalid JSON payload received. Unexpected token.")
}

// firstUnknownKey returns the first key of the JSON object raw that known
// rejects. raw must be valid JSON; a value that is not an object has no keys.
func firstUnknownKey(raw []byte, known func([]byte) bool) (string, bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) || raw[i] == '}' {
			return "", false
		}
		if raw[i] == ',' {
			i++
			continue
		}
		end := skipString(raw, i)
		key := raw[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			_ = json.Unmarshal(raw[i:end], &k)
			key = []byte(k)
		}
		if !known(key) {
			return string(key), true
		}
		i = skipSpace(raw, end) + 1 // past ':'
		i = skipValue(raw, skipSpace(raw, i))
	}
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string literal starting at raw[i].
func skipString(raw []byte, i int) int {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(raw)
}

// skipValue returns the index after the value starting at raw[i].
func skipValue(raw []byte, i int) int {
	depth := 0
	for ; i < len(raw); i++ {
		switch raw[i] {
		case '"':
			i = skipString(raw, i) - 1
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth <= 0 {
				if depth < 0 { // end of the enclosing object after a scalar
					return i
				}
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func knownRequestKey(k []byte) bool {
	switch string(k) {
	case "validate_only", "validateOnly", "message":
		return true
	}
	return false
}

func knownMessageKey(k []byte) bool {
	switch string(k) {
	case "name", "data", "notification", "android", "webpush", "apns", "fcm_options", "fcmOptions",
		"token", "topic", "condition":
		return true
	}
	return false
}

func knownAndroidKey(k []byte) bool {
	switch string(k) {
	case "collapse_key", "collapseKey", "priority", "ttl", "restricted_package_name", "restrictedPackageName",
		"data", "notification", "fcm_options", "fcmOptions", "direct_boot_ok", "directBootOk",
		"bandwidth_constrained_ok", "bandwidthConstrainedOk", "restricted_satellite_ok", "restrictedSatelliteOk":
		return true
	}
	return false
}

// literalAt returns the JSON literal a type error is about when it can be
// recovered (FCM quotes the offending value), else the kind of value.
func literalAt(b []byte, e *json.UnmarshalTypeError) string {
	end := int(e.Offset)
	if end <= 0 || end > len(b) {
		return e.Value
	}
	start := end
	for start > 0 && !strings.ContainsRune(" \t\r\n:,[{", rune(b[start-1])) {
		start--
	}
	if lit := b[start:end]; len(lit) > 0 && json.Valid(lit) {
		return string(lit)
	}
	return e.Value
}

func joinPath(loc, field string) string {
	if loc == "" {
		return field
	}
	return loc + "." + field
}

func protoScalarType(kind string) string {
	switch kind {
	case "string":
		return "TYPE_STRING"
	case "bool":
		return "TYPE_BOOL"
	case "ptr":
		return "TYPE_STRING"
	}
	return "TYPE_" + strings.ToUpper(kind)
}

// validateMessage decodes and checks a message as FCM does, returning the
// decoded message and its top-level data.
func validateMessage(raw json.RawMessage) (*wireMessage, map[string]string, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, invalidArgument("message", "Request contains an invalid argument.")
	}
	msg := new(wireMessage)
	if e := decodeStrict(raw, msg, "message", "type.googleapis.com/google.firebase.fcm.v1.Message", knownMessageKey); e != nil {
		return nil, nil, e
	}

	targets := 0
	for _, t := range [...]string{msg.Token, msg.Topic, msg.Condition} {
		if t != "" {
			targets++
		}
	}
	if targets == 0 {
		return nil, nil, invalidArgument("message", "Recipient of the message is not set.")
	}
	if targets > 1 {
		second := "topic"
		if msg.Token == "" || msg.Topic == "" {
			second = "condition"
		}
		return nil, nil, parseError("message",
			"Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '"+second+"'")
	}
	if msg.Topic != "" && !validTopic(msg.Topic) {
		return nil, nil, invalidArgument("message.topic", "Invalid topic name: "+msg.Topic)
	}

	data, size, e := decodeData(msg.Data, "message.data", "type.googleapis.com/google.firebase.fcm.v1.Message.DataEntry")
	if e != nil {
		return nil, nil, e
	}
	size += len(msg.Notification)

	if len(msg.Android) > 0 && string(msg.Android) != "null" {
		var a wireAndroid
		if e := decodeStrict(msg.Android, &a, "message.android", "type.googleapis.com/google.firebase.fcm.v1.AndroidConfig", knownAndroidKey); e != nil {
			return nil, nil, e
		}
		switch a.Priority {
		case "", "normal", "high", "NORMAL", "HIGH":
		default:
			return nil, nil, parseError("message.android.priority",
				"Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), "+strconv.Quote(a.Priority))
		}
		if a.TTL != nil {
			secs, frac, ok := parseTTL(*a.TTL)
			if !ok {
				return nil, nil, parseError("message.android.ttl",
					"Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), "+strconv.Quote(*a.TTL))
			}
			if secs > maxTTLSeconds || (secs == maxTTLSeconds && frac) {
				return nil, nil, invalidArgument("message.android.ttl",
					"Invalid value at 'message.android.ttl': TTL must not exceed 2419200s (4 weeks)")
			}
		}
		_, asize, e := decodeData(a.Data, "message.android.data", "type.googleapis.com/google.firebase.fcm.v1.AndroidConfig.DataEntry")
		if e != nil {
			return nil, nil, e
		}
		size += asize + len(a.Notification)
	}
	limit := MaxPayloadBytes
	if msg.Topic != "" {
		limit = MaxTopicPayloadBytes
	}
	if size > limit {
		return nil, nil, invalidArgument("message", "Message is too big")
	}
	return msg, data, nil
}

// decodeData decodes a data map of string values and checks its keys,
// returning it with the byte count of its keys and values.
func decodeData(raw json.RawMessage, loc, entryType string) (map[string]string, int, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, 0, nil
	}
	var data map[string]string
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, 0, diagnoseData(raw, loc, entryType)
	}
	size := 0
	for k, v := range data {
		if reservedKey(k) {
			return nil, 0, invalidArgument(loc, "Invalid data payload key: "+k)
		}
		size += len(k) + len(v)
	}
	return data, size, nil
}

// diagnoseData explains why raw is not a map of strings, naming the first
// offending entry as FCM does (message.data[N].value).
func diagnoseData(raw json.RawMessage, loc, entryType string) *apiError {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return parseError(loc, "Invalid value at '"+loc+"' ("+entryType+"), "+string(raw))
	}
	for i := 0; dec.More(); i++ {
		if _, err := dec.Token(); err != nil {
			break
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			break
		}
		if len(v) == 0 || v[0] != '"' {
			field := loc + "[" + strconv.Itoa(i) + "].value"
			return parseError(field, "Invalid value at '"+field+"' (TYPE_STRING), "+string(v))
		}
	}
	return parseError(loc, "Invalid JSON payload received. Unexpected token.")
}

// reservedKey reports whether FCM reserves a data key: "from",
// "message_type", "collapse_key", and any key starting with "google" or
// "gcm".
func reservedKey(k string) bool {
	switch k {
	case "from", "message_type", "collapse_key":
		return true
	}
	return strings.HasPrefix(k, "google") || strings.HasPrefix(k, "gcm")
}

// wellFormedToken reports whether t looks like a registration token FCM
// issues: MinTokenLength or more of [A-Za-z0-9_:-].
func wellFormedToken(t string) bool {
	if len(t) < MinTokenLength {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// validTopic reports whether t matches [a-zA-Z0-9-_.~%]+.
func validTopic(t string) bool {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '%') {
			return false
		}
	}
	return t != ""
}

// parseTTL parses a proto Duration of the form ^\d+(\.\d{1,9})?s$, returning
// the whole seconds (capped) and whether there is a non-zero fraction.
func parseTTL(s string) (secs int64, frac bool, ok bool) {
	rest, ok := strings.CutSuffix(s, "s")
	if !ok {
		return 0, false, false
	}
	whole, fraction, hasDot := strings.Cut(rest, ".")
	if whole == "" || (hasDot && (len(fraction) < 1 || len(fraction) > 9)) {
		return 0, false, false
	}
	for i := 0; i < len(whole); i++ {
		if whole[i] < '0' || whole[i] > '9' {
			return 0, false, false
		}
		if secs <= maxTTLSeconds {
			secs = secs*10 + int64(whole[i]-'0')
		}
	}
	for i := 0; i < len(fraction); i++ {
		if fraction[i] < '0' || fraction[i] > '9' {
			return 0, false, false
		}
		if fraction[i] != '0' {
			frac = true
		}
	}
	return secs, frac, true
}
