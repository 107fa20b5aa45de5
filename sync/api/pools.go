package api

import (
	"errors"
	"strings"
	"time"

	"github.com/pushsync/pushsync/internal/keypurge"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/cognito"
)

// identityPoolInput is the body of CreateIdentityPool and
// UpdateIdentityPool.
type identityPoolInput struct {
	// ID is the pool's id (create only), such as that of the Cognito pool
	// an app was built with. If not set, one is generated.
	ID string `json:"id"`
	// Region prefixes the generated pool id (create only). If not set,
	// the ARN region.
	Region string `json:"region"`
	// Restore (create only) takes back the identities and data a deleted
	// pool of the id given left; without it, creating a pool with such an
	// id is refused.
	Restore              bool                      `json:"restore"`
	Name                 string                    `json:"name"`
	AllowUnauthenticated bool                      `json:"allowUnauthenticated"`
	OpenIDProviders      []registry.OpenIDProvider `json:"openIdProviders"`
}

func poolError(err error) error {
	var msg string
	if err != nil {
		msg = strings.TrimPrefix(err.Error(), "registry: ")
	}
	switch {
	case errors.Is(err, registry.ErrInvalidPool):
		return invalidParameter("%s", msg)
	case errors.Is(err, registry.ErrPoolExists), errors.Is(err, registry.ErrPurgeUnfinished), errors.Is(err, registry.ErrDeletedPoolData):
		return resourceConflict("%s", msg)
	case errors.Is(err, registry.ErrPoolNotFound):
		return resourceNotFound("%s", msg)
	}
	return registryError(err)
}

func (s *Server) createIdentityPool(r *request) (any, error) {
	var in identityPoolInput
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	region := in.Region
	switch {
	case in.ID != "" && region != "":
		return nil, invalidParameter("give the pool's id or the region of a generated id, not both")
	case in.Restore && in.ID == "":
		return nil, invalidParameter("restore needs the id of the deleted pool to restore")
	case region == "":
		region = s.opts.ARNRegion
	}
	pool := registry.IdentityPool{ID: in.ID, Name: in.Name, AllowUnauthenticated: in.AllowUnauthenticated, OpenIDProviders: in.OpenIDProviders}
	var p registry.IdentityPool
	var err error
	if in.Restore {
		p, err = s.reg.RestoreIdentityPool(r.Context(), pool)
	} else {
		p, err = s.reg.CreateIdentityPool(r.Context(), region, pool)
	}
	if err != nil {
		return nil, poolError(err)
	}
	return created{p}, nil
}

func (s *Server) listIdentityPools(r *request) (any, error) {
	pools, err := s.reg.IdentityPools(r.Context())
	if err != nil {
		return nil, err
	}
	if pools == nil {
		pools = []registry.IdentityPool{}
	}
	return map[string]any{"identityPools": pools}, nil
}

func (s *Server) getIdentityPool(r *request) (any, error) {
	p, err := s.reg.IdentityPool(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, poolError(err)
	}
	return p, nil
}

func (s *Server) updateIdentityPool(r *request) (any, error) {
	var in identityPoolInput
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	if in.Restore {
		return nil, invalidParameter("restore applies only to creating a pool")
	}
	if in.ID != "" && in.ID != r.PathValue("id") {
		return nil, invalidParameter("a pool's id cannot be changed: the body names %s, the path %s", in.ID, r.PathValue("id"))
	}
	p, err := s.reg.UpdateIdentityPool(r.Context(), registry.IdentityPool{ID: r.PathValue("id"),
		Name: in.Name, AllowUnauthenticated: in.AllowUnauthenticated, OpenIDProviders: in.OpenIDProviders})
	if err != nil {
		return nil, poolError(err)
	}
	return p, nil
}

func (s *Server) deleteIdentityPool(r *request) (any, error) {
	if err := s.reg.DeleteIdentityPool(r.Context(), r.PathValue("id")); err != nil {
		return nil, poolError(err)
	}
	return struct{}{}, nil
}

// purgeStepTime bounds one PurgeIdentityPool call: a pool of millions of
// keys is purged by calls that each answer well within any client's or
// proxy's timeout, and that the caller repeats with the cursor returned.
const purgeStepTime = 2 * time.Second

// purgeInput is the body of PurgeIdentityPool.
type purgeInput struct {
	// Cursor continues a purge from where the last call stopped; "" or
	// absent continues an unfinished purge from where it stopped, or
	// starts one.
	Cursor string `json:"cursor"`
}

// purgeOutput answers PurgeIdentityPool.
type purgeOutput struct {
	// Removed counts the keys (and configuration entries) this call removed.
	Removed int64 `json:"removed"`
	// Scanned counts the keys this call's scans found matching the
	// patterns of its phases (most of a phase's matches are the pool's;
	// those of the identities phase are every pool's identities).
	Scanned int64 `json:"scanned"`
	// Done is true once nothing of the pool remains.
	Done bool `json:"done"`
	// Cursor is what to send to continue, while Done is false.
	Cursor string `json:"cursor,omitempty"`
	// Phase names the phase the purge goes on with, while Done is false.
	Phase string `json:"phase,omitempty"`
	// Master is the Redis master (from 1) of Masters the phase scans
	// next, while Done is false; a single Redis is master 1 of 1.
	Master  int `json:"master,omitempty"`
	Masters int `json:"masters,omitempty"`
}

// purgeIdentityPool removes, for one bounded step, the data a deleted
// identity pool left in Redis. It is refused while a pool of that id
// exists: purging is only for a pool that is gone.
func (s *Server) purgeIdentityPool(r *request) (any, error) {
	var in purgeInput
	if err := r.decode(&in); err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	var more []keypurge.Phase
	if s.store != nil {
		more = s.store.PurgePhases(id)
	}
	res, err := s.reg.PurgeIdentityPool(r.Context(), id, more, in.Cursor, time.Now().Add(purgeStepTime))
	s.metrics.purgeKeys.WithLabelValues("scanned").Add(float64(res.Scanned))
	s.metrics.purgeKeys.WithLabelValues("removed").Add(float64(res.Removed))
	log := s.log.With().Str("operation", "PurgeIdentityPool").Str("pool", id).Logger()
	if res.Removed > 0 || res.Scanned > 0 || err == nil {
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
		}
		ev.Int64("removed", res.Removed).Int64("scanned", res.Scanned).Bool("done", err == nil && res.Next == "").
			Str("phase", res.Phase).Int("master", res.Node).Int("masters", res.Nodes).Msg("purging a deleted identity pool's data")
	}
	if err != nil {
		if errors.Is(err, registry.ErrInvalidPool) && in.Cursor != "" && cognito.ValidateIdentityPoolID(id) == nil {
			return nil, invalidParameter("cursor %q is not one a purge of this pool returned", in.Cursor)
		}
		return nil, poolError(err)
	}
	return purgeOutput{Removed: res.Removed, Scanned: res.Scanned, Done: res.Next == "", Cursor: res.Next,
		Phase: res.Phase, Master: res.Node, Masters: res.Nodes}, nil
}
