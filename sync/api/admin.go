package api

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

// appInput is the body of CreatePlatformApp and UpdatePlatformApp.
type appInput struct {
	Name string                    `json:"name"`
	Kind registry.AppKind          `json:"kind"`
	APNs *registry.APNsCredentials `json:"apns"`
	FCM  *registry.FCMCredentials  `json:"fcm"`
}

// appView is a platform app as the admin API shows it: never its secrets.
// An unreadable app has only its name, revision and why: its kind, times
// and ARNs are sealed with its credentials, and are left out rather than
// shown empty or as the year 1.
type appView struct {
	Name            string            `json:"name"`
	Kind            registry.AppKind  `json:"kind,omitempty"`
	Revision        int64             `json:"revision"`
	CreatedAt       time.Time         `json:"createdAt,omitzero"`
	UpdatedAt       time.Time         `json:"updatedAt,omitzero"`
	ApplicationARNs map[string]string `json:"applicationArns,omitempty"`
	APNs            *apnsView         `json:"apns,omitempty"`
	FCM             *fcmView          `json:"fcm,omitempty"`
	// Unreadable says why the app's record cannot be read; its kind and
	// credentials are then unknown.
	Unreadable string `json:"unreadable,omitempty"`
}

type apnsView struct {
	Topic              string     `json:"topic"`
	Auth               string     `json:"auth"` // "token" or "certificate"
	KeyID              string     `json:"keyId,omitempty"`
	TeamID             string     `json:"teamId,omitempty"`
	CertificateSubject string     `json:"certificateSubject,omitempty"`
	CertificateExpires *time.Time `json:"certificateExpires,omitempty"`
}

type fcmView struct {
	ProjectID   string `json:"projectId"`
	ClientEmail string `json:"clientEmail"`
}

func (s *Server) view(a registry.App) appView {
	v := appView{Name: a.Name, Kind: a.Kind, Revision: a.Revision, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, ApplicationARNs: map[string]string{}}
	if a.Unreadable != nil {
		v.Unreadable = unreadableApp(a.Name, a.Unreadable)
	}
	for _, p := range registry.Platforms {
		if p.Kind() == a.Kind {
			v.ApplicationARNs[string(p)] = s.ARN(p, a.Name)
		}
	}
	if c := a.APNs; c != nil {
		av := &apnsView{Topic: c.Topic, Auth: "token", KeyID: c.KeyID, TeamID: c.TeamID}
		if c.Certificate != "" {
			av.Auth, av.KeyID, av.TeamID = "certificate", "", ""
			if leaf := a.CertificateLeaf(); leaf != nil {
				av.CertificateSubject = leaf.Subject.String()
				exp := leaf.NotAfter.UTC()
				av.CertificateExpires = &exp
			}
		}
		v.APNs = av
	}
	if c := a.FCM; c != nil {
		var sa struct {
			ClientEmail string `json:"client_email"`
		}
		_ = json.Unmarshal([]byte(c.ServiceAccount), &sa)
		v.FCM = &fcmView{ProjectID: c.ProjectID, ClientEmail: sa.ClientEmail}
	}
	return v
}

func appError(err error) error {
	switch {
	case errors.Is(err, registry.ErrInvalidApp):
		return invalidParameter("%s", trimRegistry(err))
	case errors.Is(err, registry.ErrAppExists), errors.Is(err, registry.ErrAppInUse):
		return resourceConflict("%s", trimRegistry(err))
	case errors.Is(err, registry.ErrAppNotFound):
		return resourceNotFound("%s", trimRegistry(err))
	case errors.Is(err, registry.ErrAppUnreadable):
		return invalidConfiguration("%s", unreadableApp("", err))
	}
	return err
}

// unreadableApp says that an app's record cannot be read, and how to
// recover; name, if given, is the app's, which err does not name.
func unreadableApp(name string, err error) string {
	msg := trimRegistry(err)
	if name != "" {
		msg = strings.TrimPrefix(msg, "app "+name+": ")
	}
	return msg + "; register its credentials again (PUT /admin/v1/apps/{name}, pushsyncctl app rotate)"
}

// trimRegistry is err's message without the registry's prefix; the
// registry's own errors name what they are about.
func trimRegistry(err error) string { return strings.TrimPrefix(err.Error(), "registry: ") }

func (s *Server) createApp(r *request) (any, error) {
	var in appInput
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	app, err := s.reg.CreateApp(r.Context(), registry.App{Name: in.Name, Kind: in.Kind, APNs: in.APNs, FCM: in.FCM})
	if err != nil {
		return nil, appError(err)
	}
	return created{s.view(app)}, nil
}

func (s *Server) replaceApp(r *request) (any, error) {
	var in appInput
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	if in.Name != "" && in.Name != name {
		return nil, invalidParameter("name: the body names %q but the path names %q", in.Name, name)
	}
	app, err := s.reg.ReplaceApp(r.Context(), registry.App{Name: name, Kind: in.Kind, APNs: in.APNs, FCM: in.FCM})
	if err != nil {
		return nil, appError(err)
	}
	return s.view(app), nil
}

func (s *Server) listApps(r *request) (any, error) {
	apps, err := s.reg.Apps(r.Context())
	if err != nil {
		return nil, err
	}
	views := make([]appView, 0, len(apps))
	for _, a := range apps {
		views = append(views, s.view(a))
	}
	return map[string]any{"apps": views}, nil
}

func (s *Server) getApp(r *request) (any, error) {
	app, err := s.reg.App(r.Context(), r.PathValue("name"))
	if err != nil {
		return nil, appError(err)
	}
	return s.view(app), nil
}

func (s *Server) deleteApp(r *request) (any, error) {
	if err := s.reg.DeleteApp(r.Context(), r.PathValue("name")); err != nil {
		return nil, appError(err)
	}
	return struct{}{}, nil
}

// credentialsOutput is what IssueIdentityCredentials returns; its
// Credentials member has the shape of Cognito Identity's
// GetCredentialsForIdentity.
type credentialsOutput struct {
	IdentityPoolId string
	IdentityId     string
	Credentials    struct {
		AccessKeyId  string
		SecretKey    string
		SessionToken string
		Expiration   float64 // epoch seconds
	}
}

func (s *Server) issueCredentials(r *request) (any, error) {
	var in struct {
		IdentityPoolId  string
		IdentityId      string
		DurationSeconds int64
	}
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	ttl := s.opts.IdentityCredentialTTL
	if in.DurationSeconds != 0 {
		// pushsyncctl's -duration checks the same range.
		if in.DurationSeconds < 60 || in.DurationSeconds > 12*3600 {
			return nil, invalidParameter("DurationSeconds: must be from 60 to 43200, got %d", in.DurationSeconds)
		}
		ttl = time.Duration(in.DurationSeconds) * time.Second
	}
	// Read the pool, not what this process may still hold of it: a
	// credential outlives any cache, and must be bound to a pool that
	// exists, so that deleting it voids the credential.
	c, err := s.reg.IssuePoolCredential(r.Context(), in.IdentityPoolId, in.IdentityId, ttl)
	if err != nil {
		return nil, poolError(err)
	}
	var out credentialsOutput
	out.IdentityPoolId, out.IdentityId = c.IdentityPoolID, c.IdentityID
	out.Credentials.AccessKeyId = c.AccessKeyID
	out.Credentials.SecretKey = c.SecretAccessKey
	out.Credentials.SessionToken = c.SessionToken
	out.Credentials.Expiration = float64(c.Expiration.Unix())
	return created{out}, nil
}

// publishEvent publishes a DatasetChanged event, as a sync server does, so
// that an operator can check a pool's push setup end to end.
func (s *Server) publishEvent(r *request) (any, error) {
	if s.opts.Publisher == nil {
		return nil, invalidConfiguration("this server publishes no events (it has no NATS connection)")
	}
	var in struct {
		IdentityPoolId string
		IdentityId     string
		DatasetName    string
		SyncCount      int64
		OriginDeviceId string
	}
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	ev := &event.DatasetChanged{
		Version: event.Version, IdentityPoolID: in.IdentityPoolId, IdentityID: in.IdentityId,
		DatasetName: in.DatasetName, SyncCount: in.SyncCount, OriginDeviceID: in.OriginDeviceId,
		ChangedAt: s.opts.Now().UTC(),
	}
	if err := ev.Validate(); err != nil {
		return nil, invalidParameter("%s", strings.TrimPrefix(err.Error(), event.ErrInvalid.Error()+": "))
	}
	if err := s.reg.CheckPool(r.Context(), ev.IdentityPoolID); err != nil {
		return nil, poolError(err)
	}
	ack, err := s.opts.Publisher.Publish(r.Context(), ev)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Stream": ack.Stream, "Sequence": ack.Sequence, "Duplicate": ack.Duplicate}, nil
}
