package api

import (
	"errors"
	"strings"

	"github.com/pushsync/pushsync/registry"
)

// identityPoolInput is the body of CreateIdentityPool and
// UpdateIdentityPool.
type identityPoolInput struct {
	// ID is the pool's id (create only), such as that of the Cognito pool
	// an app was built with. If not set, one is generated.
	ID string `json:"id"`
	// Region prefixes the generated pool id (create only). If not set,
	// the ARN region.
	Region               string                    `json:"region"`
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
	case errors.Is(err, registry.ErrPoolExists):
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
	case region == "":
		region = s.opts.ARNRegion
	}
	p, err := s.reg.CreateIdentityPool(r.Context(), region, registry.IdentityPool{ID: in.ID,
		Name: in.Name, AllowUnauthenticated: in.AllowUnauthenticated, OpenIDProviders: in.OpenIDProviders})
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
