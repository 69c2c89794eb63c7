// Package service wires the provisioner together: the SQLite store under a
// state directory, the conductor and the Ironic-compatible API, served on
// one listener. It is the single entry point "metalbed provisioner serve"
// and "metalbed up" use.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/metalbed/metalbed/provisioner/api"
	"github.com/metalbed/metalbed/provisioner/conductor"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store/sqlite"
)

// DBName is the database file inside StateDir.
const DBName = "provisioner.db"

// Config configures the provisioner service. Zero values take the
// documented defaults.
type Config struct {
	// APIAddr is where callers should listen (Serve takes the listener);
	// default api.DefaultAddr, 127.0.0.1:6385.
	APIAddr string
	// StateDir holds the database; required. Created if missing.
	StateDir string
	// Drivers are the enabled hardware types; default
	// drivers.NewDefaultRegistry(IPMI): "ipmi" and "fake-hardware".
	Drivers *drivers.Registry
	// IPMI configures the default "ipmi" hardware type when Drivers is nil.
	IPMI drivers.IPMIConfig
	// Hostname names the conductor; default os.Hostname().
	Hostname string
	// HTPasswdFile turns on HTTP basic auth (bcrypt htpasswd); default off.
	HTPasswdFile string
	// PowerSyncInterval, DeployCallbackTimeout, AutomatedClean: see
	// conductor.Config (defaults 60 s, 1800 s, false).
	PowerSyncInterval     time.Duration
	DeployCallbackTimeout time.Duration
	AutomatedClean        bool
	// Logger; nil discards.
	Logger *slog.Logger
}

// Service is a configured provisioner, not yet serving.
type Service struct {
	cfg   Config
	ready chan struct{}
}

// New checks cfg and applies defaults. It does no I/O.
func New(cfg Config) (*Service, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("provisioner: StateDir is required")
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = api.DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Drivers == nil {
		if cfg.IPMI.Logger == nil {
			cfg.IPMI.Logger = cfg.Logger
		}
		reg, err := drivers.NewDefaultRegistry(cfg.IPMI)
		if err != nil {
			return nil, fmt.Errorf("provisioner drivers: %w", err)
		}
		cfg.Drivers = reg
	}
	return &Service{cfg: cfg, ready: make(chan struct{})}, nil
}

// Addr is the API address callers should listen on.
func (s *Service) Addr() string { return s.cfg.APIAddr }

// Ready is closed once Serve has recovered the nodes and answers the API,
// for callers that enroll nodes right after starting it.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Serve opens the store, runs the conductor and answers the API on ln
// until ctx ends; then it stops both, closes the store and returns nil.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	if err := os.MkdirAll(s.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(s.cfg.StateDir, DBName))
	if err != nil {
		return err
	}
	defer st.Close()
	started := make(chan struct{})
	cond, err := conductor.New(conductor.Config{
		Hostname: s.cfg.Hostname, Store: st, Drivers: s.cfg.Drivers, Logger: s.cfg.Logger,
		PowerSyncInterval: s.cfg.PowerSyncInterval, DeployCallbackTimeout: s.cfg.DeployCallbackTimeout,
		AutomatedClean: s.cfg.AutomatedClean, OnStarted: func() { close(started) },
	})
	if err != nil {
		return err
	}
	var creds *api.Credentials
	if s.cfg.HTPasswdFile != "" {
		if creds, err = api.LoadHTPasswd(s.cfg.HTPasswdFile); err != nil {
			return err
		}
	}
	srv, err := api.New(api.Config{Conductor: cond, Store: st, Credentials: creds, Logger: s.cfg.Logger})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cond.Run(gctx) })
	g.Go(func() error {
		// Answer once the conductor has recovered and registered.
		select {
		case <-started:
		case <-gctx.Done():
			return nil
		}
		s.cfg.Logger.Info("provisioner API listening", "addr", ln.Addr().String())
		close(s.ready)
		return srv.Serve(gctx, ln)
	})
	return g.Wait()
}
