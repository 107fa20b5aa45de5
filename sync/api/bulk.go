package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/bulk"
)

// BulkPublisher starts bulk publishes and reports on them; *bulk.Runner is
// one.
type BulkPublisher interface {
	Start(ctx context.Context, pool string) error
	Details(ctx context.Context, pool string) (registry.BulkPublish, error)
}

func (s *Server) bulkPublish(r *request) (any, error) {
	pool, _, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.developerOnly("BulkPublish"); err != nil {
		return nil, err
	}
	if s.opts.Bulk == nil {
		return nil, invalidConfiguration("bulk publish is not available on this server")
	}
	err = s.opts.Bulk.Start(r.Context(), pool)
	switch {
	case err == nil:
		return struct{ IdentityPoolId string }{pool}, nil
	case errors.Is(err, registry.ErrBulkInProgress):
		return nil, newError(http.StatusBadRequest, "DuplicateRequestException", "a bulk publish of %s is in progress", pool)
	case errors.Is(err, registry.ErrAlreadyStreamed):
		return nil, newError(http.StatusBadRequest, "AlreadyStreamedException", "%v", err)
	case errors.Is(err, bulk.ErrInvalidStreamName):
		return nil, invalidParameter("%s", strings.TrimPrefix(err.Error(), bulk.ErrInvalidStreamName.Error()+": "))
	case errors.Is(err, bulk.ErrStreamsNotEnabled):
		return nil, invalidParameter("CognitoStreams: set StreamName and StreamingStatus ENABLED with SetIdentityPoolConfiguration before a bulk publish")
	}
	return nil, registryError(err)
}

func (s *Server) bulkPublishDetails(r *request) (any, error) {
	pool, _, _, _, err := labels(r)
	if err != nil {
		return nil, err
	}
	if err := r.developerOnly("GetBulkPublishDetails"); err != nil {
		return nil, err
	}
	if s.opts.Bulk == nil {
		return nil, invalidConfiguration("bulk publish is not available on this server")
	}
	b, err := s.opts.Bulk.Details(r.Context(), pool)
	if err != nil {
		return nil, err
	}
	var failure *string
	if b.FailureMessage != "" {
		failure = &b.FailureMessage
	}
	return struct {
		IdentityPoolId          string
		BulkPublishStartTime    epoch
		BulkPublishCompleteTime epoch
		BulkPublishStatus       string
		FailureMessage          *string
	}{pool, epoch(b.StartTime), epoch(b.CompleteTime), b.Status, failure}, nil
}
