package directory

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/keyline/keyline/directory/apierr"
	pb "github.com/keyline/keyline/proto"
)

// Per-field request bounds (besides Config.MaxRecvMsgSize).
const (
	maxUserIDField = 256 // bytes of a user_id field before normalisation
	maxReasonField = 64  // bytes of a reset reason
)

// Serve serves the Directory gRPC service on lis until Close (or lis
// fails). Requests are bounded by Config.MaxRecvMsgSize. opts are passed to
// NewGRPCServer, e.g. grpc.Creds(credentials.NewTLS(cfg)) to serve TLS.
func (s *Server) Serve(lis net.Listener, opts ...grpc.ServerOption) error {
	g := s.NewGRPCServer(opts...)
	s.grpcMu.Lock()
	select {
	case <-s.closing:
		s.grpcMu.Unlock()
		return apierr.New(codes.Unavailable, apierr.Unavailable, "directory is closed")
	default:
	}
	s.grpcs = append(s.grpcs, g)
	s.grpcMu.Unlock()
	return g.Serve(lis)
}

// NewGRPCServer returns a gRPC server with the Directory service
// registered and the request size limit set; Close does not stop it.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(s.cfg.MaxRecvMsgSize)}, s.limitOptions()...), opts...)
	g := grpc.NewServer(opts...)
	pb.RegisterDirectoryServer(g, &grpcService{s: s})
	return g
}

type grpcService struct {
	pb.UnimplementedDirectoryServer
	s *Server
}

func checkUser(id string) error {
	if len(id) > maxUserIDField {
		return apierr.New(codes.InvalidArgument, apierr.RequestTooLarge, "user_id is %d bytes, over %d", len(id), maxUserIDField)
	}
	return nil
}

func (g *grpcService) Update(ctx context.Context, r *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	res, err := g.s.Update(ctx, r.GetAccountState())
	if err != nil {
		return nil, err
	}
	return updateResponse(res), nil
}

func updateResponse(r *UpdateResult) *pb.UpdateResponse {
	return &pb.UpdateResponse{Epoch: r.Epoch, LogIndex: r.LogIndex, Leaf: r.Leaf, Checkpoint: r.Checkpoint}
}

// bearer extracts the token of "authorization: Bearer <token>".
func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}

func (g *grpcService) Reset(ctx context.Context, r *pb.ResetRequest) (*pb.UpdateResponse, error) {
	tok := bearer(ctx)
	if tok == "" {
		return nil, apierr.New(codes.Unauthenticated, apierr.Unauthenticated, "Reset needs metadata \"authorization: Bearer <admin token>\"")
	}
	if !g.s.keys.checkAdmin(tok) {
		return nil, apierr.New(codes.PermissionDenied, apierr.PermissionDenied, "wrong admin token")
	}
	if err := checkUser(r.GetUserId()); err != nil {
		return nil, err
	}
	if len(r.GetReason()) > maxReasonField {
		return nil, apierr.New(codes.InvalidArgument, apierr.RequestTooLarge, "reason is %d bytes, over %d", len(r.GetReason()), maxReasonField)
	}
	res, err := g.s.Reset(ctx, tok, r.GetUserId(), r.GetAccountState(), r.GetReason())
	if err != nil {
		return nil, err
	}
	return updateResponse(res), nil
}

func (g *grpcService) Lookup(ctx context.Context, r *pb.LookupRequest) (*pb.LookupResponse, error) {
	if err := checkUser(r.GetUserId()); err != nil {
		return nil, err
	}
	b, err := g.s.Lookup(ctx, r.GetUserId(), r.GetKnownTreeSize())
	if err != nil {
		return nil, err
	}
	return &pb.LookupResponse{
		Checkpoint: b.Checkpoint, VrfProof: b.VRFProof, MapProof: b.MapProof,
		EpochRecord: b.EpochRecord, EpochRecordInclusion: b.EpochRecordInclusion,
		AccountUpdate: b.AccountUpdate, AccountUpdateIndex: b.AccountUpdateIndex,
		Consistency: b.Consistency,
	}, nil
}

func (g *grpcService) History(ctx context.Context, r *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	if err := checkUser(r.GetUserId()); err != nil {
		return nil, err
	}
	h, err := g.s.History(ctx, r.GetUserId(), r.GetFromVersion())
	if err != nil {
		return nil, err
	}
	resp := &pb.HistoryResponse{Checkpoint: h.Checkpoint, VrfProof: h.VRFProof}
	for _, e := range h.Entries {
		resp.Entries = append(resp.Entries, &pb.HistoryEntry{LogIndex: e.LogIndex, Leaf: e.Leaf, Inclusion: e.Inclusion})
	}
	return resp, nil
}

func (g *grpcService) GetCheckpoint(ctx context.Context, _ *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	cp, err := g.s.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.GetCheckpointResponse{Checkpoint: cp}, nil
}

func (g *grpcService) GetConsistencyProof(ctx context.Context, r *pb.GetConsistencyProofRequest) (*pb.GetConsistencyProofResponse, error) {
	p, err := g.s.ConsistencyProof(ctx, r.GetOldSize(), r.GetNewSize())
	if err != nil {
		return nil, err
	}
	return &pb.GetConsistencyProofResponse{Proof: p}, nil
}

func (g *grpcService) GetEntries(ctx context.Context, r *pb.GetEntriesRequest) (*pb.GetEntriesResponse, error) {
	l, err := g.s.Entries(ctx, r.GetStart(), r.GetEnd())
	if err != nil {
		return nil, err
	}
	return &pb.GetEntriesResponse{Leaves: l}, nil
}
