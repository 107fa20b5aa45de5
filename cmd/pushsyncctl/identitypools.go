package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// defineIdentityPool adds the flags of identitypool create and update.
func defineIdentityPool(fs *flag.FlagSet, v *cmdFlags) {
	fs.StringVar(&v.name, "name", "", "the pool's name")
	fs.StringVar(&v.poolRegion, "region", "", "create: the region prefix of the pool id (default: the server's ARN region)")
	fs.StringVar(&v.poolID, "id", "", "create: the pool's id, REGION:UUID, such as that of the Cognito pool an app was built with (default: a new one)")
	fs.BoolVar(&v.restore, "restore", false, "create: take back the identities and data a deleted pool of that -id left")
	fs.BoolVar(&v.allowUnauthenticated, "allow-unauthenticated", false, "let GetId hand out identities without a login")
	fs.StringVar(&v.oidcIssuer, "oidc-issuer", "", "an OpenID Connect provider's issuer URL (the iss of its ID tokens)")
	fs.StringVar(&v.oidcClientIDs, "oidc-client-ids", "", "comma-separated client ids accepted as the ID tokens' aud")
	fs.StringVar(&v.oidcJWKSURL, "oidc-jwks-url", "", "where the provider's signing keys are (default: ISSUER/.well-known/jwks.json)")
}

// defineIdentityPoolUpdate adds the flags of identitypool update: those of
// create, and -no-oidc.
func defineIdentityPoolUpdate(fs *flag.FlagSet, v *cmdFlags) {
	defineIdentityPool(fs, v)
	fs.BoolVar(&v.noOIDC, "no-oidc", false, "remove the pool's OpenID Connect providers")
}

type openIDProvider struct {
	Issuer    string   `json:"issuer"`
	ClientIDs []string `json:"clientIds"`
	JWKSURL   string   `json:"jwksUrl,omitempty"`
}

type identityPool struct {
	ID                   string           `json:"id,omitempty"`
	Region               string           `json:"region,omitempty"`
	Restore              bool             `json:"restore,omitempty"`
	Name                 string           `json:"name"`
	AllowUnauthenticated bool             `json:"allowUnauthenticated"`
	OpenIDProviders      []openIDProvider `json:"openIdProviders"`
	CreatedAt            time.Time        `json:"createdAt,omitzero"`
}

func poolBody(v *cmdFlags) (*identityPool, error) {
	p := &identityPool{ID: v.poolID, Region: v.poolRegion, Restore: v.restore, Name: v.name, AllowUnauthenticated: v.allowUnauthenticated, OpenIDProviders: []openIDProvider{}}
	if v.oidcIssuer == "" {
		if v.oidcClientIDs != "" || v.oidcJWKSURL != "" {
			return nil, &usageError{cmd: v.cmd, msg: "-oidc-client-ids and -oidc-jwks-url need -oidc-issuer"}
		}
		return p, nil
	}
	var ids []string
	for _, id := range strings.Split(v.oidcClientIDs, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, &usageError{cmd: v.cmd, msg: "-oidc-issuer needs -oidc-client-ids"}
	}
	p.OpenIDProviders = append(p.OpenIDProviders, openIDProvider{Issuer: v.oidcIssuer, ClientIDs: ids, JWKSURL: v.oidcJWKSURL})
	return p, nil
}

func poolPath(id string) string { return "/admin/v1/identitypools/" + segment(id) }

// identityPoolCreate creates a pool and prints its id.
func identityPoolCreate(c *cli, v *cmdFlags) error {
	if v.poolID != "" && v.poolRegion != "" {
		return &usageError{cmd: v.cmd, msg: "-id and -region: give one, the pool's id or the region of a new one"}
	}
	if v.restore && v.poolID == "" {
		return &usageError{cmd: v.cmd, msg: "-restore needs -id, the id of the deleted pool to restore"}
	}
	body, err := poolBody(v)
	if err != nil {
		return err
	}
	raw, err := c.admin(http.MethodPost, "/admin/v1/identitypools", body)
	if err != nil {
		return err
	}
	var p identityPool
	if done, err := c.decodeAnswer(raw, "a pool", &p); done || err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, p.ID)
	return err
}

// identityPoolUpdate changes the settings whose flags are given and keeps
// the others: the admin API replaces a pool's settings as a whole, so the
// pool is read first. A rename must not turn off the sign-in its users rely
// on.
func identityPoolUpdate(c *cli, v *cmdFlags) error {
	given, err := poolBody(v)
	if err != nil {
		return err
	}
	switch {
	case v.poolRegion != "" || v.poolID != "" || v.restore:
		return &usageError{cmd: v.cmd, msg: "-region, -id and -restore apply only to identitypool create"}
	case v.noOIDC && v.given["oidc-issuer"]:
		return &usageError{cmd: v.cmd, msg: "-no-oidc and -oidc-issuer: give one, to remove the providers or to replace them"}
	case !v.given["name"] && !v.given["allow-unauthenticated"] && !v.given["oidc-issuer"] && !v.noOIDC:
		return &usageError{cmd: v.cmd, msg: "identitypool update needs at least one of -name, -allow-unauthenticated, -oidc-issuer and -no-oidc"}
	}
	raw, err := c.admin(http.MethodGet, poolPath(v.arg), nil)
	if err != nil {
		return err
	}
	var cur identityPool
	if err := json.Unmarshal(raw, &cur); err != nil {
		return fmt.Errorf("the API answered a pool that does not decode: %w", err)
	}
	body := &identityPool{Name: cur.Name, AllowUnauthenticated: cur.AllowUnauthenticated, OpenIDProviders: cur.OpenIDProviders}
	if v.given["name"] {
		body.Name = given.Name
	}
	if v.given["allow-unauthenticated"] {
		body.AllowUnauthenticated = given.AllowUnauthenticated
	}
	if v.given["oidc-issuer"] || v.noOIDC {
		body.OpenIDProviders = given.OpenIDProviders
	}
	if body.OpenIDProviders == nil {
		body.OpenIDProviders = []openIDProvider{}
	}
	raw, err = c.admin(http.MethodPut, poolPath(v.arg), body)
	if err != nil {
		return err
	}
	return c.printIdentityPool(raw)
}

// identityPoolShow prints a pool.
func identityPoolShow(c *cli, v *cmdFlags) error {
	raw, err := c.admin(http.MethodGet, poolPath(v.arg), nil)
	if err != nil {
		return err
	}
	return c.printIdentityPool(raw)
}

// identityPoolDelete deletes a pool.
func identityPoolDelete(c *cli, v *cmdFlags) error {
	raw, err := c.admin(http.MethodDelete, poolPath(v.arg), nil)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.printJSON(raw)
	}
	_, err = fmt.Fprintf(c.stdout, "deleted identity pool %s; its identities and data stay until purged (identitypool purge %[1]s) or restored (identitypool create -id %[1]s -restore)\n", v.arg)
	return err
}

// identityPoolList prints every pool, one line each.
func identityPoolList(c *cli, _ *cmdFlags) error {
	raw, err := c.admin(http.MethodGet, "/admin/v1/identitypools", nil)
	if err != nil {
		return err
	}
	var list struct {
		Pools []identityPool `json:"identityPools"`
	}
	if done, err := c.decodeAnswer(raw, "a pool list", &list); done || err != nil {
		return err
	}
	if len(list.Pools) == 0 {
		_, err := fmt.Fprintln(c.stdout, "no identity pools")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tUNAUTHENTICATED\tOPENID PROVIDERS")
	for _, p := range list.Pools {
		var issuers []string
		for _, o := range p.OpenIDProviders {
			issuers = append(issuers, o.Issuer)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", p.ID, p.Name, p.AllowUnauthenticated, strings.Join(issuers, ","))
	}
	return tw.Flush()
}

func (c *cli) printIdentityPool(raw []byte) error {
	var p identityPool
	if done, err := c.decodeAnswer(raw, "a pool", &p); done || err != nil {
		return err
	}
	kv := [][2]string{{"id", p.ID}, {"name", p.Name}, {"unauthenticated identities", fmt.Sprint(p.AllowUnauthenticated)},
		{"created", p.CreatedAt.UTC().Format(time.RFC3339)}}
	for i, o := range p.OpenIDProviders {
		kv = append(kv, [2]string{fmt.Sprintf("openid provider %d", i+1), o.Issuer + " (clients " + strings.Join(o.ClientIDs, ",") + ")"})
		if o.JWKSURL != "" {
			kv = append(kv, [2]string{fmt.Sprintf("openid provider %d keys", i+1), o.JWKSURL})
		}
	}
	return c.printKV(kv)
}

// identityPoolPurge erases what a deleted pool left in Redis, calling the
// admin API's bounded purge step until it is done.
func identityPoolPurge(c *cli, v *cmdFlags) error {
	var removed, scanned int64
	phase := ""
	for cursor := ""; ; {
		raw, err := c.admin(http.MethodPost, poolPath(v.arg)+"/purge", map[string]string{"cursor": cursor})
		if err != nil {
			c.progress("")
			if cursor != "" {
				return fmt.Errorf("%w (%d keys removed, %d scanned; stopped in phase %s: run identitypool purge %s again to go on from there)", err, removed, scanned, phase, v.arg)
			}
			return err
		}
		var out struct {
			Removed int64  `json:"removed"`
			Scanned int64  `json:"scanned"`
			Done    bool   `json:"done"`
			Cursor  string `json:"cursor"`
			Phase   string `json:"phase"`
			Master  int    `json:"master"`
			Masters int    `json:"masters"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			c.progress("")
			return fmt.Errorf("the API answered invalid JSON: %w", err)
		}
		removed += out.Removed
		scanned += out.Scanned
		if out.Done {
			break
		}
		cursor, phase = out.Cursor, out.Phase
		if out.Phase == "waiting" {
			c.progress("purging identity pool %s: waiting for every API process to stop serving the deleted pool", v.arg)
			continue
		}
		c.progress("purging identity pool %s: phase %s, Redis master %d of %d: %d keys scanned, %d removed", v.arg, out.Phase, out.Master, out.Masters, scanned, removed)
	}
	c.progress("")
	if c.output == "json" {
		return c.printValue(map[string]any{"id": v.arg, "removed": removed, "scanned": scanned})
	}
	_, err := fmt.Fprintf(c.stdout, "purged identity pool %s: %d keys removed\n", v.arg, removed)
	return err
}
