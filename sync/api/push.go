package api

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/cognito"
)

func (s *Server) routes() {
	const ds = "/identitypools/{IdentityPoolId}/identities/{IdentityId}/datasets/{DatasetName}"
	s.handle("POST /identitypools/{IdentityPoolId}/identity/{IdentityId}/device", "RegisterDevice", CognitoSyncService, s.registerDevice)
	s.handle("POST "+ds+"/subscriptions/{DeviceId}", "SubscribeToDataset", CognitoSyncService, s.subscribe)
	s.handle("DELETE "+ds+"/subscriptions/{DeviceId}", "UnsubscribeFromDataset", CognitoSyncService, s.unsubscribe)
	s.handle("GET /identitypools/{IdentityPoolId}/configuration", "GetIdentityPoolConfiguration", CognitoSyncService, s.getPoolConfiguration)
	if s.store != nil {
		s.handle("GET "+ds+"/records", "ListRecords", CognitoSyncService, s.listRecords)
		s.handle("POST "+ds, "UpdateRecords", CognitoSyncService, s.updateRecords)
		s.handle("GET "+ds, "DescribeDataset", CognitoSyncService, s.describeDataset)
		s.handle("DELETE "+ds, "DeleteDataset", CognitoSyncService, s.deleteDataset)
		s.handle("GET /identitypools/{IdentityPoolId}/identities/{IdentityId}/datasets", "ListDatasets", CognitoSyncService, s.listDatasets)
		s.handle("GET /identitypools/{IdentityPoolId}/identities/{IdentityId}", "DescribeIdentityUsage", CognitoSyncService, s.describeIdentityUsage)
		s.handle("GET /identitypools/{IdentityPoolId}", "DescribeIdentityPoolUsage", CognitoSyncService, s.describePoolUsage)
		s.handle("GET /identitypools", "ListIdentityPoolUsage", CognitoSyncService, s.listPoolUsage)
	}
	s.handle("POST /identitypools/{IdentityPoolId}/bulkpublish", "BulkPublish", CognitoSyncService, s.bulkPublish)
	s.handle("POST /identitypools/{IdentityPoolId}/getBulkPublishDetails", "GetBulkPublishDetails", CognitoSyncService, s.bulkPublishDetails)
	s.handle("GET /identitypools/{IdentityPoolId}/events", "GetCognitoEvents", CognitoSyncService, s.cognitoEvents)
	s.handle("POST /identitypools/{IdentityPoolId}/events", "SetCognitoEvents", CognitoSyncService, s.cognitoEvents)
	s.handle("POST /identitypools/{IdentityPoolId}/configuration", "SetIdentityPoolConfiguration", CognitoSyncService, s.setPoolConfiguration)

	s.handle("POST /admin/v1/apps", "CreatePlatformApp", AdminService, s.createApp)
	s.handle("GET /admin/v1/apps", "ListPlatformApps", AdminService, s.listApps)
	s.handle("GET /admin/v1/apps/{name}", "GetPlatformApp", AdminService, s.getApp)
	s.handle("PUT /admin/v1/apps/{name}", "UpdatePlatformApp", AdminService, s.replaceApp)
	s.handle("DELETE /admin/v1/apps/{name}", "DeletePlatformApp", AdminService, s.deleteApp)
	s.handle("POST /admin/v1/credentials", "IssueIdentityCredentials", AdminService, s.issueCredentials)
	s.handle("POST /admin/v1/events", "PublishEvent", AdminService, s.publishEvent)
	s.handle("GET /admin/v1/deadletters", "ListDeadLetters", AdminService, s.listDeadLetters)
	s.handle("POST /admin/v1/deadletters/{seq}/replay", "ReplayDeadLetter", AdminService, s.deadLetterAction(func(d DeadLetterStore, r *request, seq uint64) error { return d.Replay(r.Context(), seq) }))
	s.handle("DELETE /admin/v1/deadletters/{seq}", "DiscardDeadLetter", AdminService, s.deadLetterAction(func(d DeadLetterStore, r *request, seq uint64) error { return d.Discard(r.Context(), seq) }))
	s.handle("GET /admin/v1/secrets", "DescribeSecrets", AdminService, s.describeSecrets)
	s.handle("POST /admin/v1/secrets/reseal", "ResealSecrets", AdminService, s.resealSecrets)
	s.handle("POST /admin/v1/identitypools", "CreateIdentityPool", AdminService, s.createIdentityPool)
	s.handle("GET /admin/v1/identitypools", "ListIdentityPools", AdminService, s.listIdentityPools)
	s.handle("GET /admin/v1/identitypools/{id}", "GetIdentityPool", AdminService, s.getIdentityPool)
	s.handle("PUT /admin/v1/identitypools/{id}", "UpdateIdentityPool", AdminService, s.updateIdentityPool)
	s.handle("DELETE /admin/v1/identitypools/{id}", "DeleteIdentityPool", AdminService, s.deleteIdentityPool)
	s.handle("POST /admin/v1/identitypools/{id}/purge", "PurgeIdentityPool", AdminService, s.purgeIdentityPool)
	// {IdentityPoolId}, not {id}: developer calls naming a pool act only in
	// one that exists (see serve).
	identityDevices := "/admin/v1/identitypools/{IdentityPoolId}/identities/{IdentityId}/devices"
	s.handle("GET "+identityDevices, "ListIdentityDevices", AdminService, s.listDevices)
	s.handle("DELETE "+identityDevices+"/{DeviceId}", "RemoveIdentityDevice", AdminService, s.removeDevice)

	unknown := func(r *request) (any, error) { return nil, unknownOperation(r.Method, r.URL.EscapedPath()) }
	s.handle("/admin/", "Unknown", AdminService, unknown)
	s.handle("/", "Unknown", CognitoSyncService, unknown)
}

// labels reads and validates the identity path labels a route has.
func labels(r *request) (pool, identity, dataset, device string, err error) {
	pool, identity = r.PathValue("IdentityPoolId"), r.PathValue("IdentityId")
	dataset, device = r.PathValue("DatasetName"), r.PathValue("DeviceId")
	checks := []error{cognito.ValidateIdentityPoolID(pool)}
	if r.Pattern != "" && strings.Contains(r.Pattern, "{IdentityId}") {
		checks = append(checks, cognito.ValidateIdentityID(identity))
	}
	if strings.Contains(r.Pattern, "{DatasetName}") {
		checks = append(checks, cognito.ValidateDatasetName(dataset))
	}
	if strings.Contains(r.Pattern, "{DeviceId}") {
		checks = append(checks, cognito.ValidateDeviceID(device))
	}
	for _, e := range checks {
		if e != nil {
			return "", "", "", "", invalidParameter("%v", e)
		}
	}
	return pool, identity, dataset, device, nil
}

// registryError maps the registry's errors onto API errors.
func registryError(err error) error {
	var fe *cognito.FieldError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return invalidParameter("%v", fe)
	case errors.Is(err, registry.ErrDeviceNotFound):
		return resourceNotFound("%s", strings.TrimPrefix(err.Error(), "registry: "))
	case errors.Is(err, registry.ErrNotSubscribed):
		return resourceNotFound("%s", strings.TrimPrefix(err.Error(), "registry: "))
	case errors.Is(err, registry.ErrTooManyDevices), errors.Is(err, registry.ErrTooManySubscriptions):
		return limitExceeded("%s", strings.TrimPrefix(err.Error(), "registry: "))
	case errors.Is(err, registry.ErrPushNotEnabled):
		return invalidConfiguration("%s", strings.TrimPrefix(err.Error(), "registry: "))
	}
	return err
}

// pushConfigured returns the pool's push configuration, or
// InvalidConfigurationException if push sync is off.
func (s *Server) pushConfigured(r *request, pool string) (registry.PoolPush, error) {
	pp, err := s.reg.PoolPush(r.Context(), pool)
	if errors.Is(err, registry.ErrPushNotEnabled) {
		return pp, invalidConfiguration("push sync is not configured for identity pool %s; set it with SetIdentityPoolConfiguration", pool)
	}
	return pp, err
}

func (s *Server) registerDevice(r *request) (any, error) {
	pool, identity, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	var in struct {
		Platform *string
		Token    *string
	}
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	if in.Platform == nil {
		return nil, invalidParameter("Platform: is required")
	}
	if in.Token == nil || strings.TrimSpace(*in.Token) == "" {
		return nil, invalidParameter("Token: is required and must not be empty")
	}
	platform, err := registry.ParsePlatform(*in.Platform)
	if err != nil {
		return nil, registryError(err)
	}
	if _, err := registry.NormalizeToken(platform, *in.Token); err != nil {
		return nil, registryError(err)
	}
	pp, err := s.pushConfigured(r, pool)
	if err != nil {
		return nil, err
	}
	if _, ok := pp.Apps[platform]; !ok {
		return nil, invalidConfiguration("identity pool %s has no platform application for %s", pool, platform)
	}
	dev, _, err := s.reg.RegisterDevice(r.Context(), pool, identity, platform, *in.Token)
	if err != nil {
		return nil, registryError(err)
	}
	return map[string]string{"DeviceId": dev.ID}, nil
}

func (s *Server) subscribe(r *request) (any, error) { return s.subscription(r, s.reg.Subscribe) }

func (s *Server) unsubscribe(r *request) (any, error) { return s.subscription(r, s.reg.Unsubscribe) }

// subscription serves SubscribeToDataset and UnsubscribeFromDataset, which
// differ only in the registry call.
func (s *Server) subscription(r *request, change func(ctx context.Context, pool, identity, dataset, device string) error) (any, error) {
	pool, identity, dataset, device, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.actFor(pool, identity); err != nil {
		return nil, err
	}
	if _, err := s.pushConfigured(r, pool); err != nil {
		return nil, err
	}
	if err := change(r.Context(), pool, identity, dataset, device); err != nil {
		return nil, registryError(err)
	}
	return struct{}{}, nil
}

// pushSync and cognitoStreams are the wire shapes of the pool
// configuration.
type pushSync struct {
	ApplicationArns []string
	RoleArn         *string `json:",omitempty"`
}

type cognitoStreams struct {
	StreamName      *string `json:",omitempty"`
	RoleArn         *string `json:",omitempty"`
	StreamingStatus *string `json:",omitempty"`
}

type poolConfiguration struct {
	IdentityPoolId string
	PushSync       *pushSync
	CognitoStreams *cognitoStreams
}

func (s *Server) getPoolConfiguration(r *request) (any, error) {
	pool, _, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.developerOnly("GetIdentityPoolConfiguration"); err != nil {
		return nil, err
	}
	return s.poolConfiguration(r, pool)
}

func (s *Server) poolConfiguration(r *request, pool string) (*poolConfiguration, error) {
	var cfg registry.PoolConfig
	pp, err := s.reg.PoolPush(r.Context(), pool)
	switch {
	case err == nil:
		cfg.Push = pp
	case !errors.Is(err, registry.ErrPushNotEnabled):
		return nil, err
	}
	if cfg.Streams, err = s.reg.PoolStreams(r.Context(), pool); err != nil {
		return nil, err
	}
	return s.configurationOf(pool, cfg), nil
}

// configurationOf returns the wire shape of a pool's configuration.
func (s *Server) configurationOf(pool string, cfg registry.PoolConfig) *poolConfiguration {
	out := &poolConfiguration{IdentityPoolId: pool}
	if pp := cfg.Push; len(pp.Apps) > 0 {
		out.PushSync = &pushSync{ApplicationArns: pp.ApplicationARNs}
		if len(pp.ApplicationARNs) == 0 {
			// Stored without the ARNs it was given as (through the
			// registry, not this API): the ARNs of the apps it uses.
			out.PushSync.ApplicationArns = []string{}
			for _, p := range registry.Platforms {
				if name, ok := pp.Apps[p]; ok {
					out.PushSync.ApplicationArns = append(out.PushSync.ApplicationArns, s.ARN(p, name))
				}
			}
		}
		if pp.RoleARN != "" {
			out.PushSync.RoleArn = &pp.RoleARN
		}
	}
	if st := cfg.Streams; st != nil {
		out.CognitoStreams = &cognitoStreams{StreamName: nonEmpty(st.StreamName), RoleArn: nonEmpty(st.RoleARN), StreamingStatus: nonEmpty(st.StreamingStatus)}
	}
	return out
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var (
	applicationARN = regexp.MustCompile(`^arn:aws:sns:[-0-9a-z]+:\d+:app/([A-Z_]+)/([a-zA-Z0-9_.-]+)$`)
	roleARN        = regexp.MustCompile(`^arn:aws:iam::\d+:role/.*$`)
)

func (s *Server) setPoolConfiguration(r *request) (any, error) {
	pool, _, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.developerOnly("SetIdentityPoolConfiguration"); err != nil {
		return nil, err
	}
	var in struct {
		PushSync       *pushSync
		CognitoStreams *cognitoStreams
	}
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	// Check everything the request gives before reading what is stored.
	var apps map[registry.Platform]string
	if ps := in.PushSync; ps != nil {
		if ps.RoleArn != nil {
			if err := checkRoleARN("PushSync.RoleArn", *ps.RoleArn); err != nil {
				return nil, err
			}
		}
		if ps.ApplicationArns != nil {
			apps = map[registry.Platform]string{}
		}
		for i, arn := range ps.ApplicationArns {
			m := applicationARN.FindStringSubmatch(arn)
			if m == nil {
				return nil, invalidParameter("PushSync.ApplicationArns[%d]: %q is not a platform application ARN (arn:aws:sns:<region>:<account>:app/<APNS|APNS_SANDBOX|GCM>/<name>)", i, arn)
			}
			platform, err := registry.ParsePlatform(m[1])
			if err != nil {
				return nil, invalidParameter("PushSync.ApplicationArns[%d]: %v", i, err)
			}
			if _, dup := apps[platform]; dup {
				return nil, invalidParameter("PushSync.ApplicationArns[%d]: a second application for %s; give one per platform", i, platform)
			}
			app, err := s.reg.App(r.Context(), m[2])
			if errors.Is(err, registry.ErrAppNotFound) {
				return nil, invalidParameter("PushSync.ApplicationArns[%d]: no platform application named %s is registered with pushsync", i, m[2])
			}
			if err != nil {
				return nil, appError(err)
			}
			if app.Kind != platform.Kind() {
				return nil, invalidParameter("PushSync.ApplicationArns[%d]: %s is an %s application and cannot serve %s", i, app.Name, app.Kind, platform)
			}
			apps[platform] = app.Name
		}
	}
	if c := in.CognitoStreams; c != nil {
		if c.StreamName != nil && (len(*c.StreamName) < 1 || len(*c.StreamName) > 128) {
			return nil, invalidParameter("CognitoStreams.StreamName: must be 1 to 128 characters")
		}
		if c.RoleArn != nil {
			if err := checkRoleARN("CognitoStreams.RoleArn", *c.RoleArn); err != nil {
				return nil, err
			}
		}
		if c.StreamingStatus != nil && *c.StreamingStatus != "ENABLED" && *c.StreamingStatus != "DISABLED" {
			return nil, invalidParameter("CognitoStreams.StreamingStatus: must be ENABLED or DISABLED, got %q", *c.StreamingStatus)
		}
	}
	// Apply the request to what is stored, in one transaction that runs
	// again if another change came between: a member left out keeps its
	// stored value, also when another call changes it meanwhile; an empty
	// ApplicationArns list turns push sync off.
	cfg, err := s.reg.UpdatePoolConfig(r.Context(), pool, func(cfg *registry.PoolConfig) error {
		if ps := in.PushSync; ps != nil {
			if apps != nil {
				cfg.Push.Apps, cfg.Push.ApplicationARNs = apps, ps.ApplicationArns
			}
			if ps.RoleArn != nil {
				if ps.ApplicationArns == nil && len(cfg.Push.Apps) == 0 {
					return invalidParameter("PushSync.RoleArn: identity pool %s has no platform applications, and a role alone does not turn push sync on; give PushSync.ApplicationArns with it", pool)
				}
				cfg.Push.RoleARN = *ps.RoleArn
			}
		}
		if c := in.CognitoStreams; c != nil {
			st := registry.Streams{}
			if cfg.Streams != nil {
				st = *cfg.Streams
			}
			if c.StreamName != nil {
				st.StreamName = *c.StreamName
			}
			if c.RoleArn != nil {
				st.RoleARN = *c.RoleArn
			}
			if c.StreamingStatus != nil {
				st.StreamingStatus = *c.StreamingStatus
			}
			cfg.Streams = &st
		}
		return nil
	})
	if errors.Is(err, registry.ErrInvalidPoolPush) {
		// An app was deleted or replaced since it was checked above.
		return nil, invalidParameter("PushSync: %s", trimRegistry(errors.Unwrap(err)))
	}
	if err != nil {
		return nil, err
	}
	return s.configurationOf(pool, cfg), nil
}

// checkRoleARN checks a role ARN member against the model's AssumeRoleArn:
// an IAM role ARN of 20 to 2048 characters.
func checkRoleARN(field, arn string) error {
	if !roleARN.MatchString(arn) {
		return invalidParameter("%s: %q is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)", field, arn)
	}
	if n := utf8.RuneCountInString(arn); n < 20 || n > 2048 {
		return invalidParameter("%s: an IAM role ARN is 20 to 2048 characters, got %d", field, n)
	}
	return nil
}

// ARN returns the platform application ARN of an app for a platform, as
// the admin API shows it.
func (s *Server) ARN(platform registry.Platform, app string) string {
	return fmt.Sprintf("arn:aws:sns:%s:%s:app/%s/%s", s.opts.ARNRegion, s.opts.ARNAccount, platform, app)
}
