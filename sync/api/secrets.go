package api

import (
	"errors"
	"time"

	"github.com/pushsync/pushsync/registry"
)

// secretsError maps a registry without a master key to a clear answer.
func secretsError(err error) error {
	if errors.Is(err, registry.ErrNoMasterKey) {
		return invalidConfiguration("secrets.master_key is not set: records are not encrypted")
	}
	return err
}

// describeSecrets counts the sealed records under each master key, so that
// an operator sees whether a rotation is done.
func (s *Server) describeSecrets(r *request) (any, error) {
	rep, err := s.reg.SecretsStatus(r.Context())
	if err != nil {
		return nil, secretsError(err)
	}
	return rep, nil
}

// resealProgressEvery is how often a running reseal logs its progress.
const resealProgressEvery = 5 * time.Second

// resealSecrets moves every record sealed under the secondary master key to
// the current one.
func (s *Server) resealSecrets(r *request) (any, error) {
	start := time.Now()
	last := start
	log := s.log.With().Str("operation", "ResealSecrets").Logger()
	rep, err := s.reg.ResealSecrets(r.Context(), func(p registry.SecretsReport) {
		if time.Since(last) >= resealProgressEvery {
			last = time.Now()
			log.Info().Int("apps_resealed", p.Apps.Resealed).Int("credentials_seen", p.Credentials.Total).
				Int("credentials_resealed", p.Credentials.Resealed).Msg("resealing secrets")
		}
	})
	if err != nil {
		return nil, secretsError(err)
	}
	log.Info().Int("apps", rep.Apps.Total).Int("apps_resealed", rep.Apps.Resealed).Int("apps_unreadable", rep.Apps.Unreadable).
		Int("credentials", rep.Credentials.Total).Int("credentials_resealed", rep.Credentials.Resealed).
		Int("credentials_unreadable", rep.Credentials.Unreadable).Stringer("took", time.Since(start).Round(time.Millisecond)).Msg("secrets resealed under the current master key")
	return rep, nil
}
