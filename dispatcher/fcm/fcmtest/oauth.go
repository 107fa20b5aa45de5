package fcmtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// maxAssertionLifetime is how far exp may lie after iat.
	maxAssertionLifetime = time.Hour
	// clockSkew is how far in the future iat may lie.
	clockSkew = 5 * time.Minute
)

type serviceAccount struct {
	projectID string
	email     string
	keyID     string
	publicKey *rsa.PublicKey
}

type accessToken struct {
	projectID string
	email     string
	expiry    time.Time
	// canSend: the assertion asked for a scope that lets the token send
	// messages (SendScope or CloudPlatformScope).
	canSend bool
}

// Scopes that let an access token call messages:send; FCM refuses a token
// granted neither with 403 PERMISSION_DENIED, insufficient scopes.
const (
	// SendScope is the scope of Firebase Cloud Messaging.
	SendScope = "https://www.googleapis.com/auth/firebase.messaging"
	// CloudPlatformScope is the scope of every Google Cloud API.
	CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"
)

// scopeAllowsSend reports whether a space-separated scope list holds a
// scope that lets its token send messages.
func scopeAllowsSend(scope string) bool {
	for _, s := range strings.Fields(scope) {
		if s == SendScope || s == CloudPlatformScope {
			return true
		}
	}
	return false
}

// serviceAccountKey is a service-account JSON key file, with fields in the
// order Google writes them.
type serviceAccountKey struct {
	Type                    string `json:"type"`
	ProjectID               string `json:"project_id"`
	PrivateKeyID            string `json:"private_key_id"`
	PrivateKey              string `json:"private_key"`
	ClientEmail             string `json:"client_email"`
	ClientID                string `json:"client_id"`
	AuthURI                 string `json:"auth_uri"`
	TokenURI                string `json:"token_uri"`
	AuthProviderX509CertURL string `json:"auth_provider_x509_cert_url"`
	ClientX509CertURL       string `json:"client_x509_cert_url"`
	UniverseDomain          string `json:"universe_domain"`
}

// AddServiceAccount generates an RSA-2048 service account for projectID,
// registers its public key with the emulator and returns its JSON key file,
// shaped as the one Google issues (type service_account, PKCS#8 private key,
// client_email firebase-adminsdk-xxxxx@<project>.iam.gserviceaccount.com,
// token_uri = TokenURL()), loadable by golang.org/x/oauth2/google.
func (s *Server) AddServiceAccount(projectID string) ([]byte, error) {
	if projectID == "" || strings.ContainsAny(projectID, "/@ ") {
		return nil, fmt.Errorf("fcmtest: invalid project id %q", projectID)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("fcmtest: generate service account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("fcmtest: marshal service account key: %w", err)
	}
	keyID := make([]byte, 20)
	suffix := make([]byte, 5)
	if _, err := rand.Read(keyID); err != nil {
		return nil, err
	}
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	for i, b := range suffix {
		suffix[i] = 'a' + b%26
	}
	clientID, err := rand.Int(rand.Reader, new(big.Int).Exp(big.NewInt(10), big.NewInt(20), nil))
	if err != nil {
		return nil, err
	}
	email := "firebase-adminsdk-" + string(suffix) + "@" + projectID + ".iam.gserviceaccount.com"
	sa := &serviceAccount{
		projectID: projectID,
		email:     email,
		keyID:     hex.EncodeToString(keyID),
		publicKey: &key.PublicKey,
	}
	file := serviceAccountKey{
		Type:                    "service_account",
		ProjectID:               projectID,
		PrivateKeyID:            sa.keyID,
		PrivateKey:              string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		ClientEmail:             email,
		ClientID:                "1" + fmt.Sprintf("%020d", clientID),
		AuthURI:                 "https://accounts.google.com/o/oauth2/auth",
		TokenURI:                s.TokenURL(),
		AuthProviderX509CertURL: "https://www.googleapis.com/oauth2/v1/certs",
		ClientX509CertURL:       "https://www.googleapis.com/robot/v1/metadata/x509/" + url.PathEscape(email),
		UniverseDomain:          "googleapis.com",
	}
	out, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return nil, err
	}
	s.addAccount(sa)
	return append(out, '\n'), nil
}

// AddServiceAccountKey registers the service account of keyFile, a JSON
// key file that AddServiceAccount issued for projectID, by this server or
// by another before it (a program that keeps the file between runs passes
// it here), so that this server grants access tokens to it again. It says
// what is wrong with a file that is not such a key file or is another
// project's. The file's token_uri is not checked: the caller points it at
// TokenURL or a name of this server.
func (s *Server) AddServiceAccountKey(projectID string, keyFile []byte) error {
	var f serviceAccountKey
	if err := json.Unmarshal(keyFile, &f); err != nil {
		return fmt.Errorf("not a service account key file, a JSON object: %v", err)
	}
	switch {
	case f.Type != "service_account":
		return fmt.Errorf(`type is %q, not "service_account"`, f.Type)
	case f.ProjectID != projectID:
		return fmt.Errorf("project_id is %q, not %q", f.ProjectID, projectID)
	case f.ClientEmail == "" || f.PrivateKeyID == "":
		return errors.New("client_email and private_key_id are required")
	}
	block, _ := pem.Decode([]byte(f.PrivateKey))
	if block == nil || block.Type != "PRIVATE KEY" {
		return errors.New("private_key is not a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY----- and base64 lines)")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("private_key is damaged: %v", err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return fmt.Errorf("private_key is a %T, not the RSA key of a service account", key)
	}
	s.addAccount(&serviceAccount{projectID: projectID, email: f.ClientEmail, keyID: f.PrivateKeyID, publicKey: &rsaKey.PublicKey})
	return nil
}

func (s *Server) addAccount(sa *serviceAccount) {
	s.authMu.Lock()
	s.accounts[sa.email] = sa
	s.authMu.Unlock()
}

// ExpireTokens makes every access token issued so far invalid, as if it had
// expired or been revoked; requests bearing one get 401 UNAUTHENTICATED.
func (s *Server) ExpireTokens() {
	s.authMu.Lock()
	clear(s.tokens)
	s.authMu.Unlock()
}

// lookupToken returns the project an access token is bound to.
func (s *Server) lookupToken(tok string, now time.Time) (accessToken, bool) {
	s.authMu.RLock()
	at, ok := s.tokens[tok]
	s.authMu.RUnlock()
	if !ok || !now.Before(at.expiry) {
		return accessToken{}, false
	}
	return at, true
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

type jwtClaims struct {
	Iss   string          `json:"iss"`
	Scope *string         `json:"scope"`
	Aud   json.RawMessage `json:"aud"`
	Exp   int64           `json:"exp"`
	Iat   int64           `json:"iat"`
	Sub   string          `json:"sub"`
}

// oauthError is a Google OAuth2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
}

func writeOAuthError(w http.ResponseWriter, e oauthError) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	w.WriteHeader(e.status)
	b, _ := json.MarshalIndent(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{e.code, e.desc}, "", "  ")
	_, _ = w.Write(append(b, '\n'))
}

// TokenFailure is an answer the token endpoint gives instead of an access
// token, as Google's does when it throttles a client (429) or fails
// (500, 503): an OAuth2 error with the status.
type TokenFailure struct {
	// HTTPStatus is the response status code, 429 or a 5xx.
	HTTPStatus int
	// RetryAfter, if positive, is sent as a Retry-After header in seconds.
	RetryAfter time.Duration
	// Times is how many token requests the failure applies to; 0 means
	// forever.
	Times int
}

type tokenFailureState struct {
	f         TokenFailure
	remaining int // 0 = forever
}

// FailTokenRequests makes requests to the token endpoint fail with *f, for
// f.Times requests or forever; nil removes it. A status that is neither
// 429 nor a 5xx panics: the token endpoint's refusals of a service
// account (400 invalid_grant) come from the account itself.
func (s *Server) FailTokenRequests(f *TokenFailure) {
	var st *tokenFailureState
	if f != nil {
		if f.HTTPStatus != http.StatusTooManyRequests && (f.HTTPStatus < 500 || f.HTTPStatus > 599) {
			panic(fmt.Sprintf("fcmtest: token endpoint failure with status %d, want 429 or a 5xx", f.HTTPStatus))
		}
		st = &tokenFailureState{f: *f, remaining: f.Times}
	}
	s.failMu.Lock()
	s.failOAuth = st
	s.failMu.Unlock()
}

// takeTokenFailure returns the failure that applies to a token request,
// and consumes one of its Times.
func (s *Server) takeTokenFailure() (TokenFailure, bool) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	st := s.failOAuth
	if st == nil {
		return TokenFailure{}, false
	}
	if st.remaining > 0 {
		if st.remaining--; st.remaining == 0 {
			s.failOAuth = nil
		}
	}
	return st.f, true
}

// serveToken implements POST /token for the JWT-bearer grant.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.stats.tokenRequests.Add(1)
	if f, ok := s.takeTokenFailure(); ok {
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((f.RetryAfter+time.Second-1)/time.Second), 10))
		}
		e := oauthError{f.HTTPStatus, "internal_failure", "The service is currently unavailable."}
		if f.HTTPStatus == http.StatusTooManyRequests {
			e = oauthError{f.HTTPStatus, "rate_limit_exceeded", "Rate limit exceeded."}
		}
		writeOAuthError(w, e)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeOAuthError(w, oauthError{http.StatusMethodNotAllowed, "invalid_request", "Method " + r.Method + " is not allowed."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, oauthError{http.StatusBadRequest, "invalid_request", "Could not parse the request body."})
		return
	}
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case "":
		writeOAuthError(w, oauthError{http.StatusBadRequest, "invalid_request", "Missing required parameter: grant_type"})
		return
	case jwtBearerGrant:
	default:
		writeOAuthError(w, oauthError{http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: " + grant})
		return
	}
	assertion := r.PostForm.Get("assertion")
	if assertion == "" {
		writeOAuthError(w, oauthError{http.StatusBadRequest, "invalid_request", "Missing required parameter: assertion"})
		return
	}
	sa, scope, e := s.verifyAssertion(assertion, r)
	if e != nil {
		writeOAuthError(w, *e)
		return
	}

	raw := make([]byte, 48)
	if _, err := rand.Read(raw); err != nil {
		writeOAuthError(w, oauthError{http.StatusInternalServerError, "internal_failure", "Could not generate a token."})
		return
	}
	tok := "ya29.c." + base64.RawURLEncoding.EncodeToString(raw)
	now := time.Now()
	lifetime := s.opts.tokenLifetime
	s.authMu.Lock()
	for k, v := range s.tokens { // drop expired tokens; issuing is rare
		if !now.Before(v.expiry) {
			delete(s.tokens, k)
		}
	}
	s.tokens[tok] = accessToken{projectID: sa.projectID, email: sa.email, expiry: now.Add(lifetime), canSend: scopeAllowsSend(scope)}
	s.authMu.Unlock()
	s.stats.tokensIssued.Add(1)

	secs := int64((lifetime + time.Second - 1) / time.Second)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	b, _ := json.MarshalIndent(struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}{tok, secs, "Bearer"}, "", "  ")
	_, _ = w.Write(append(b, '\n'))
}

// verifyAssertion checks a service-account JWT the way Google's token
// endpoint does and returns the account it names with the scopes it asks
// for.
func (s *Server) verifyAssertion(assertion string, r *http.Request) (*serviceAccount, string, *oauthError) {
	badSig := &oauthError{http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature."}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, "", badSig
	}
	var hdr jwtHeader
	var claims jwtClaims
	if !decodeSegment(parts[0], &hdr) || !decodeSegment(parts[1], &claims) {
		return nil, "", badSig
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || hdr.Alg != "RS256" {
		return nil, "", badSig
	}

	s.authMu.RLock()
	sa := s.accounts[claims.Iss]
	s.authMu.RUnlock()
	if sa == nil {
		return nil, "", &oauthError{http.StatusBadRequest, "invalid_grant", "Invalid grant: account not found"}
	}
	if hdr.Kid != "" && hdr.Kid != sa.keyID {
		return nil, "", badSig
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(sa.publicKey, crypto.SHA256, digest[:], sig) != nil {
		return nil, "", badSig
	}

	if !s.audienceOK(claims.Aud, r) {
		return nil, "", &oauthError{http.StatusBadRequest, "invalid_grant",
			"Invalid JWT: Failed audience check. The right audience is " + s.TokenURL()}
	}
	now := time.Now()
	iat, exp := time.Unix(claims.Iat, 0), time.Unix(claims.Exp, 0)
	if claims.Iat == 0 || claims.Exp == 0 || !exp.After(now) || iat.After(now.Add(clockSkew)) ||
		exp.Before(iat) || exp.Sub(iat) > maxAssertionLifetime {
		return nil, "", &oauthError{http.StatusBadRequest, "invalid_grant",
			"Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}
	}
	if claims.Scope == nil || strings.TrimSpace(*claims.Scope) == "" {
		return nil, "", &oauthError{http.StatusBadRequest, "invalid_scope",
			"Invalid OAuth scope or ID token audience provided."}
	}
	return sa, *claims.Scope, nil
}

// audienceOK accepts TokenURL() and the token URL as the client addressed
// it (which differs when the client used a WithHosts name).
func (s *Server) audienceOK(raw json.RawMessage, r *http.Request) bool {
	var aud string
	if json.Unmarshal(raw, &aud) != nil || aud == "" {
		return false
	}
	return aud == s.TokenURL() || aud == "https://"+r.Host+"/token"
}

func decodeSegment(seg string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}
