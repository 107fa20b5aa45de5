package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/emufeed"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/emutls"
)

// fileSet is files of -dir that go together: all there, or none.
type fileSet struct {
	files []string
	// what the files are, and what making them anew asks of pushsyncd and
	// its apps.
	what, after string
}

// The credentials pushemu keeps in -dir from one start to the next. The
// server certificates are issued by the authorities again whenever they do
// not fit; no client holds them.
var (
	apnsCA = fileSet{[]string{"apns-ca.pem", "apns-ca-key.pem"}, "APNs authority",
		"restart pushsyncd, which reads apns-ca.pem at start"}
	fcmCA = fileSet{[]string{"fcm-ca.pem", "fcm-ca-key.pem"}, "FCM authority",
		"restart pushsyncd, which reads fcm-ca.pem at start"}
	apnsKey = fileSet{[]string{"apns-authkey.p8"}, "APNs signing key",
		"give the APNs apps the new key with pushsyncctl app rotate"}
	fcmAccount = fileSet{[]string{"fcm-service-account.json"}, "FCM service account",
		"give the FCM apps the new file with pushsyncctl app rotate"}
	// kept are the credentials pushsyncd and its apps hold.
	kept = []fileSet{apnsCA, fcmCA, apnsKey, fcmAccount}

	apnsServer = fileSet{[]string{"apns-server.pem", "apns-server-key.pem"}, "APNs server certificate", ""}
	fcmServer  = fileSet{[]string{"fcm-server.pem", "fcm-server-key.pem"}, "FCM server certificate", ""}
)

// credentials are what the emulators present and accept: their TLS
// identities, the APNs signing key and the FCM service account.
type credentials struct {
	dir            string
	apns, fcm      *emutls.Identity
	authKey        *ecdsa.PrivateKey
	serviceAccount []byte // nil until the FCM emulator issues one

	made  []fileSet         // made at this start, for want of usable ones
	files map[string][]byte // files made at this start, to write
	log   *zerolog.Logger
}

// badFiles is a set of files in -dir that pushemu cannot use and will not
// replace on its own.
type badFiles struct {
	dir     string
	set     fileSet
	file    string // the file at fault
	problem string
}

func (e *badFiles) Error() string {
	return fmt.Sprintf("%s: %s; pushemu reuses the credentials in %s, so that pushsyncd and its apps keep working, and replaces none on its own: "+
		"remove %s to have a new %s made (then %s), or start pushemu with -new-credentials to make all its credentials anew",
		filepath.Join(e.dir, e.file), e.problem, e.dir, strings.Join(e.set.files, " and "), e.set.what, e.set.after)
}

// loadCredentials takes the credentials an earlier start left in dir and
// makes those it does not find (all of them when fresh). The server
// certificates must name hosts besides localhost and the loopback
// addresses. A set of files that is there but cannot be used (damaged, a
// key that is not its certificate's, an expired authority, a file missing
// from it) is a *badFiles error; a server certificate that does not fit is
// issued again, with a warning.
func loadCredentials(dir string, hosts []string, fresh bool, log *zerolog.Logger) (*credentials, error) {
	c := &credentials{dir: dir, files: make(map[string][]byte), log: log}
	if !fresh && legacyDir(dir) {
		// Such a pushemu made everything anew at every start; so does this
		// start, once, and the next ones keep what it makes.
		log.Warn().Msgf("%s holds the credentials of an earlier pushemu, which kept no CA keys and made new credentials at every start; "+
			"made new ones, which later starts keep: restart pushsyncd and give the apps the new keys with pushsyncctl app rotate, as after every start before", dir)
		fresh = true
	}
	var err error
	if c.apns, err = c.identity(apnsCA, apnsServer, "apns-emulator", hosts, fresh); err != nil {
		return nil, err
	}
	if c.fcm, err = c.identity(fcmCA, fcmServer, "fcm.googleapis.com", hosts, fresh); err != nil {
		return nil, err
	}
	if c.authKey, err = c.signingKey(fresh); err != nil {
		return nil, err
	}
	sa, err := c.read(fcmAccount, fresh)
	if err != nil {
		return nil, err
	}
	if sa == nil {
		c.made = append(c.made, fcmAccount)
	} else {
		c.serviceAccount = sa[0]
	}
	return c, nil
}

// legacyDir says whether dir is one an earlier pushemu wrote: it holds a
// CA certificate but none of the keys and server certificates pushemu
// keeps now.
func legacyDir(dir string) bool {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	if !exists(apnsCA.files[0]) && !exists(fcmCA.files[0]) {
		return false
	}
	for _, name := range []string{apnsCA.files[1], fcmCA.files[1], apnsServer.files[0], apnsServer.files[1], fcmServer.files[0], fcmServer.files[1]} {
		if exists(name) {
			return false
		}
	}
	return true
}

// read reads the files of set, or none when fresh, returning nil when
// none is there; one missing beside the others is a *badFiles error.
func (c *credentials) read(set fileSet, fresh bool) ([][]byte, error) {
	if fresh {
		return nil, nil
	}
	data := make([][]byte, len(set.files))
	var there, missing []string
	for i, name := range set.files {
		b, err := os.ReadFile(filepath.Join(c.dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, name)
		case err != nil:
			return nil, err
		default:
			data[i] = b
			there = append(there, name)
		}
	}
	switch {
	case len(there) == 0:
		return nil, nil
	case len(missing) > 0:
		return nil, &badFiles{c.dir, set, missing[0], fmt.Sprintf("missing, while %s is there: the two go together", there[0])}
	}
	return data, nil
}

// identity is the TLS identity of the set's authority, with a server
// certificate naming hosts.
func (c *credentials) identity(caSet, serverSet fileSet, commonName string, hosts []string, fresh bool) (*emutls.Identity, error) {
	data, err := c.read(caSet, fresh)
	if err != nil {
		return nil, err
	}
	var ca *emutls.Authority
	if data == nil {
		if ca, err = emutls.NewAuthority(commonName + " emulator CA"); err != nil {
			return nil, err
		}
		c.made = append(c.made, caSet)
		c.files[caSet.files[0]], c.files[caSet.files[1]] = ca.PEM, ca.KeyPEM()
		return c.issue(ca, serverSet, commonName, hosts)
	}
	if bad := c.check(caSet, data, func() (err error) { ca, err = emutls.LoadAuthority(data[0], data[1]); return err }); bad != nil {
		return nil, bad
	}

	data, err = c.read(serverSet, false)
	var bad *badFiles
	switch {
	case errors.As(err, &bad):
	case err != nil:
		return nil, err
	case data == nil:
		return c.issue(ca, serverSet, commonName, hosts)
	default:
		var id *emutls.Identity
		var loadErr error
		if bad = c.check(serverSet, data, func() error { id, loadErr = ca.LoadIdentity(data[0], data[1], hosts...); return loadErr }); bad == nil {
			return id, nil
		}
		if errors.As(loadErr, new(x509.HostnameError)) {
			c.log.Info().Msgf("%s: %s; issued a new one from %s", filepath.Join(c.dir, bad.file), bad.problem, caSet.files[0])
			return c.issue(ca, serverSet, commonName, hosts)
		}
	}
	c.log.Warn().Msgf("%s: %s; issued a new %s from %s, which its clients trust", filepath.Join(c.dir, bad.file), bad.problem, serverSet.what, caSet.files[0])
	return c.issue(ca, serverSet, commonName, hosts)
}

// check parses the certificate and key of set, in data, and then calls
// load, saying which file is at fault when something is wrong.
func (c *credentials) check(set fileSet, data [][]byte, load func() error) *badFiles {
	if _, err := emutls.ParseCertificate(data[0]); err != nil {
		return &badFiles{c.dir, set, set.files[0], err.Error()}
	}
	if _, err := emutls.ParseKey(data[1]); err != nil {
		return &badFiles{c.dir, set, set.files[1], err.Error()}
	}
	switch err := load(); {
	case errors.Is(err, emutls.ErrKeyMismatch):
		return &badFiles{c.dir, set, set.files[1], "not the key of the certificate in " + set.files[0]}
	case err != nil:
		return &badFiles{c.dir, set, set.files[0], err.Error()}
	}
	return nil
}

// issue issues a server certificate from ca, to be written as set.
func (c *credentials) issue(ca *emutls.Authority, set fileSet, commonName string, hosts []string) (*emutls.Identity, error) {
	id, err := ca.Issue(commonName, hosts...)
	if err != nil {
		return nil, err
	}
	c.files[set.files[0]], c.files[set.files[1]] = id.CertPEM(), id.KeyPEM()
	return id, nil
}

// signingKey is the APNs signing key the emulators accept.
func (c *credentials) signingKey(fresh bool) (*ecdsa.PrivateKey, error) {
	data, err := c.read(apnsKey, fresh)
	if err != nil {
		return nil, err
	}
	if data != nil {
		key, err := emutls.ParseKey(data[0])
		if err != nil {
			return nil, &badFiles{c.dir, apnsKey, apnsKey.files[0], err.Error()}
		}
		return key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c.made = append(c.made, apnsKey)
	c.files[apnsKey.files[0]] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return key, nil
}

// addServiceAccount registers the service account with the FCM emulator,
// or has it issue one, with token_uri naming tokenURI.
func (c *credentials) addServiceAccount(fcmEmu *fcmtest.Server, tokenURI string) error {
	if c.serviceAccount == nil {
		sa, err := fcmEmu.AddServiceAccount(ProjectID)
		if err != nil {
			return err
		}
		c.serviceAccount, err = withTokenURI(sa, tokenURI)
		return err
	}
	if err := fcmEmu.AddServiceAccountKey(ProjectID, c.serviceAccount); err != nil {
		return &badFiles{c.dir, fcmAccount, fcmAccount.files[0], err.Error()}
	}
	var sa struct {
		TokenURI string `json:"token_uri"`
	}
	_ = json.Unmarshal(c.serviceAccount, &sa) // AddServiceAccountKey parsed it
	if sa.TokenURI == tokenURI {
		return nil
	}
	c.log.Warn().Msgf("%s: token_uri names %s now, not %s, as -fcm-addr or -hosts changed: give the FCM apps the file again with pushsyncctl app rotate",
		filepath.Join(c.dir, fcmAccount.files[0]), tokenURI, sa.TokenURI)
	var err error
	c.serviceAccount, err = withTokenURI(c.serviceAccount, tokenURI)
	return err
}

// report logs what was made anew, and what that asks of pushsyncd and its
// apps when it replaces credentials they might hold.
func (c *credentials) report(fresh bool) {
	switch {
	case len(c.made) == 0:
		c.log.Info().Str("dir", c.dir).Msg("reusing the authorities, the APNs signing key and the FCM service account of an earlier start")
	case fresh:
		c.log.Warn().Str("dir", c.dir).Msg("made new authorities, APNs signing key and FCM service account (-new-credentials): restart pushsyncd, and give its apps the new keys with pushsyncctl app rotate")
	case len(c.made) == len(kept):
		c.log.Info().Str("dir", c.dir).Msg("made new authorities, APNs signing key and FCM service account")
	default:
		for _, set := range c.made {
			c.log.Warn().Str("dir", c.dir).Msgf("made a new %s (%s), as there was none; %s", set.what, strings.Join(set.files, ", "), set.after)
		}
	}
}

// write writes what was made at this start into dir, the service account
// and the other files given.
func (c *credentials) write(others map[string][]byte) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	c.files[fcmAccount.files[0]] = c.serviceAccount
	for _, files := range []map[string][]byte{c.files, others} {
		for name, data := range files {
			if err := emufeed.WriteFile(c.dir, name, data); err != nil {
				return err
			}
		}
	}
	return nil
}

// withTokenURI sets a service account's token_uri.
func withTokenURI(sa []byte, uri string) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(sa, &m); err != nil {
		return nil, err
	}
	if m["token_uri"] == uri {
		return sa, nil
	}
	m["token_uri"] = uri
	b, err := json.MarshalIndent(m, "", "  ")
	return append(b, '\n'), err
}
