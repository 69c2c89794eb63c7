// Package conductor is the provisioner's Ironic-conductor look-alike: it
// owns the provision state machine (one transition table, fsm.go), per-node
// exclusive locks (the node's reservation), asynchronous tasks, periodic
// power-state sync, provision timeouts, recovery after a crash, node history
// and its own registration with a heartbeat. It reaches machines only
// through the drivers' interfaces.
package conductor

import (
	"context"
	"errors"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalbed/metalbed/provisioner"
	"github.com/metalbed/metalbed/provisioner/drivers"
	"github.com/metalbed/metalbed/provisioner/store"
)

// Config configures a Conductor. Zero values take the documented defaults.
type Config struct {
	// Hostname names this conductor in reservations and /v1/conductors.
	// Default: os.Hostname().
	Hostname string
	// Store keeps nodes, ports, history and conductors. Required.
	Store store.Store
	// Drivers are the enabled hardware types. Required.
	Drivers *drivers.Registry
	// Logger receives milestones and transitions; nil discards.
	Logger *slog.Logger

	// PowerSyncInterval is how often power states are read from the BMCs
	// and recorded (Ironic sync_power_state_interval). Default 60 s;
	// negative disables.
	PowerSyncInterval time.Duration
	// PowerSyncMaxRetries BMC failures in a row put a node into maintenance
	// with fault "power failure" (Ironic power_state_sync_max_retries).
	// Default 3.
	PowerSyncMaxRetries int
	// DeployCallbackTimeout fails nodes left in "wait call-back" longer
	// than this (Ironic deploy_callback_timeout). Default 1800 s.
	DeployCallbackTimeout time.Duration
	// CleanCallbackTimeout fails nodes left in "clean wait" longer than
	// this (Ironic clean_callback_timeout). Default 1800 s.
	CleanCallbackTimeout time.Duration
	// InspectWaitTimeout fails nodes left in "inspect wait" longer than
	// this (Ironic [conductor]inspect_wait_timeout). Default 1800 s.
	InspectWaitTimeout time.Duration
	// CheckProvisionInterval is how often timeouts are checked (Ironic
	// check_provision_state_interval). Default 60 s.
	CheckProvisionInterval time.Duration
	// HeartbeatInterval is how often the conductor record is touched.
	// Default 10 s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how old a heartbeat may be for a conductor to
	// count as alive. Default 60 s.
	HeartbeatTimeout time.Duration
	// AutomatedClean is the default for nodes whose automated_clean is
	// unset. Automated cleaning runs through the node's deploy interface
	// when it implements drivers.Cleaner (iscsi: boot the deploy ramdisk,
	// wipe the partition tables); other deploy interfaces fail it into
	// "clean failed". Default false.
	AutomatedClean bool
	// Recorder is told of every provision state a node enters
	// (events.ConductorState, detail "state" or "state → target"), of a
	// node reaching "active" (events.ConductorActive) or failing
	// (events.ConductorFailed, detail last_error), keyed by node UUID and
	// name, when it happens. It must not block. Default: none.
	Recorder events.Recorder
	// Registerer receives the conductor's metrics (metalbed_conductor_*:
	// transitions, time in each state, deploy and clean durations, power
	// actions). nil: none are exported.
	Registerer prometheus.Registerer
	// Faults is asked (layer conductor) when a node becomes active or fails
	// (ops "active", "failed") and about every node once a second (op
	// "now"); the Injector a service hands in carries a kill out by
	// stopping the conductor as a crash would. Default: none.
	Faults fault.Injector
	// LockRetries and LockRetryInterval: how often and how long to retry a
	// reserved node before answering NodeLocked (Ironic
	// node_locked_retry_attempts/interval). Defaults 3 and 1 s.
	LockRetries       int
	LockRetryInterval time.Duration
	// OnStarted, when set, is called once Run has registered the
	// conductor and recovered the nodes, before any periodic task.
	OnStarted func()
	// ResumeAfter, when set, holds back carrying on the nodes a previous
	// run left waiting for their machines (resume.go) until it is closed:
	// the caller first re-points nodes at BMCs that moved (the testbed's
	// enroll). nil: they are locked before the API answers and carried on
	// at once.
	ResumeAfter <-chan struct{}
	// Now is the clock every timestamp the conductor records (provision
	// and power state changes, heartbeats, history) and every timeout it
	// checks (callback timeouts, conductor liveness) is read from; default
	// time.Now. Tests inject one to check intervals without waiting.
	Now func() time.Time
}

// Conductor runs provisioning for the nodes in its Store.
type Conductor struct {
	cfg   Config
	log   *slog.Logger
	host  string
	st    store.Store
	types *drivers.Registry

	mu        sync.Mutex
	runCtx    context.Context // nil until Run
	tasks     sync.WaitGroup
	powerFail map[string]int // node -> BMC failures in a row during sync
	metrics   *condMetrics
}

// New checks cfg and applies defaults. It does no I/O.
func New(cfg Config) (*Conductor, error) {
	if cfg.Store == nil {
		return nil, errors.New("conductor: Store is required")
	}
	if cfg.Drivers == nil {
		return nil, errors.New("conductor: Drivers is required")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "metalbed"
		}
		cfg.Hostname = h
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.PowerSyncInterval, 60*time.Second)
	def(&cfg.DeployCallbackTimeout, 1800*time.Second)
	def(&cfg.CleanCallbackTimeout, 1800*time.Second)
	def(&cfg.InspectWaitTimeout, 1800*time.Second)
	def(&cfg.CheckProvisionInterval, 60*time.Second)
	def(&cfg.HeartbeatInterval, 10*time.Second)
	def(&cfg.HeartbeatTimeout, 60*time.Second)
	def(&cfg.LockRetryInterval, time.Second)
	if cfg.LockRetries == 0 {
		cfg.LockRetries = 3
	}
	if cfg.PowerSyncMaxRetries == 0 {
		cfg.PowerSyncMaxRetries = 3
	}
	cfg.Recorder = events.OrDiscard(cfg.Recorder)
	cfg.Faults = fault.OrNone(cfg.Faults)
	m, err := newCondMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	return &Conductor{
		cfg: cfg, log: cfg.Logger, host: cfg.Hostname, st: cfg.Store, types: cfg.Drivers,
		powerFail: map[string]int{}, metrics: m,
	}, nil
}

// Hostname is this conductor's name.
func (c *Conductor) Hostname() string { return c.host }

// Drivers returns the enabled hardware types.
func (c *Conductor) Drivers() *drivers.Registry { return c.types }

// HeartbeatTimeout is how old a heartbeat may be for a live conductor.
func (c *Conductor) HeartbeatTimeout() time.Duration { return c.cfg.HeartbeatTimeout }

// now reads the configured clock, in UTC as the store keeps times.
func (c *Conductor) now() time.Time { return c.cfg.Now().UTC() }

// Run registers the conductor, recovers nodes a previous run left in
// transient states, carries on those it left waiting for their machines
// (resume.go), then runs the periodic tasks until ctx ends. It waits
// for running tasks, marks itself offline and returns nil — also when ctx
// ends while it is still starting.
func (c *Conductor) Run(ctx context.Context) error {
	if err := c.st.RegisterConductor(ctx, provisioner.Conductor{
		Hostname: c.host, Drivers: c.types.Names(), CreatedAt: c.now(), UpdatedAt: c.now(),
	}); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a stop, not a failure
		}
		return fmt.Errorf("register conductor %s: %w", c.host, err)
	}
	if err := c.recover(ctx); err != nil {
		if ctx.Err() == nil {
			return fmt.Errorf("recover nodes: %w", err)
		}
		// Stopped while recovering: what is left is recovered on the next start.
		c.offline(ctx)
		return nil
	}
	var held []*provisioner.Node
	if c.cfg.ResumeAfter == nil {
		var err error
		if held, err = c.reserveResumable(ctx); err != nil {
			c.releaseAll(ctx, held)
			if ctx.Err() == nil {
				return fmt.Errorf("recover nodes: %w", err)
			}
			c.offline(ctx)
			return nil
		}
	}
	c.mu.Lock()
	c.runCtx = ctx
	c.mu.Unlock()
	c.log.Info("conductor started", "host", c.host, "drivers", c.types.Names())
	if c.cfg.ResumeAfter == nil {
		c.resume(held)
	}
	c.startConsoles(ctx)
	defer c.stopConsoles(ctx)
	if c.cfg.OnStarted != nil {
		c.cfg.OnStarted()
	}

	var loops sync.WaitGroup
	every := func(d time.Duration, f func(context.Context)) {
		if d < 0 {
			return
		}
		loops.Add(1)
		go func() {
			defer loops.Done()
			t := time.NewTicker(d)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					f(ctx)
				}
			}
		}()
	}
	if c.cfg.ResumeAfter != nil {
		loops.Add(1)
		go func() {
			defer loops.Done()
			c.resumeAfter(ctx, c.cfg.ResumeAfter)
		}()
	}
	every(c.cfg.HeartbeatInterval, func(ctx context.Context) {
		if err := c.st.TouchConductor(ctx, c.host); err != nil && ctx.Err() == nil {
			c.log.Warn("conductor heartbeat", "err", err)
		}
	})
	every(c.cfg.PowerSyncInterval, c.SyncPowerStates)
	every(c.cfg.CheckProvisionInterval, c.CheckTimeouts)
	if _, none := c.cfg.Faults.(fault.None); !none {
		every(time.Second, c.askFaultsNow)
	}
	<-ctx.Done()
	loops.Wait()
	c.tasks.Wait()
	c.offline(ctx)
	return nil
}

// askFaultsNow asks layer conductor about each node with op "now": a kill
// rule for "now" makes the conductor die within a second.
func (c *Conductor) askFaultsNow(ctx context.Context) {
	nodes, err := c.st.Nodes(ctx, store.NodeFilter{})
	if err != nil {
		return
	}
	for _, n := range nodes {
		c.cfg.Faults.Inject(fault.Conductor, events.Who{Node: n.UUID, NodeName: n.Name}, fault.OpNow)
	}
}

// offline records the conductor going offline, with a fresh context as
// ctx is over.
func (c *Conductor) offline(ctx context.Context) {
	off, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.st.UnregisterConductor(off, c.host); err != nil {
		c.log.Warn("unregister conductor", "err", err)
	}
	c.log.Info("conductor stopped", "host", c.host)
}

// recover clears reservations this host left and fails nodes stuck in
// transient states, as Ironic's conductor does when it starts.
func (c *Conductor) recover(ctx context.Context) error {
	mine := c.host
	held, err := c.st.Nodes(ctx, store.NodeFilter{Reservation: &mine})
	if err != nil {
		return err
	}
	for _, n := range held {
		if err := c.st.ReleaseNode(ctx, n.UUID, c.host); err != nil {
			return err
		}
		c.log.Info("cleared stale reservation", "node", n.UUID)
	}
	for _, state := range stuckStates {
		free := ""
		nodes, err := c.st.Nodes(ctx, store.NodeFilter{ProvisionState: state, Reservation: &free})
		if err != nil {
			return err
		}
		for _, n := range nodes {
			n, err := c.st.ReserveNode(ctx, n.UUID, c.host)
			if err != nil {
				continue // another conductor took it meanwhile
			}
			msg := fmt.Sprintf("The %s state can't be resumed by conductor %s. Moving to fail state.", state, c.host)
			c.failNode(ctx, n, msg)
			c.release(ctx, n.UUID)
		}
	}
	// Power actions in flight died with the old process.
	all, err := c.st.Nodes(ctx, store.NodeFilter{})
	if err != nil {
		return err
	}
	for _, n := range all {
		if n.TargetPowerState != "" && n.Reservation == "" {
			n.TargetPowerState = ""
			if err := c.st.UpdateNode(ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// history records an event for node n; failures are logged, not returned:
// history must never stop provisioning.
func (c *Conductor) history(ctx context.Context, n *provisioner.Node, severity, eventType, event string) {
	err := c.st.AddHistory(ctx, provisioner.HistoryEvent{
		UUID: uuid.NewString(), NodeUUID: n.UUID, CreatedAt: c.now(), Severity: severity,
		Event: event, EventType: eventType, Conductor: c.host,
	})
	if err != nil && ctx.Err() == nil {
		c.log.Warn("record node history", "node", n.UUID, "err", err)
	}
}

// transition moves n along the table by event and saves it.
func (c *Conductor) transition(ctx context.Context, n *provisioner.Node, event Event) error {
	from, since := n.ProvisionState, n.ProvisionUpdatedAt
	to, err := Next(from, event)
	if err != nil {
		return err
	}
	n.TargetProvisionState = targetOf(from, to, event, n.TargetProvisionState)
	n.ProvisionState = to
	n.ProvisionUpdatedAt = c.now()
	n.UpdatedAt = n.ProvisionUpdatedAt
	if err := c.st.UpdateNode(ctx, n); err != nil {
		return fmt.Errorf("save node %s: %w", n.UUID, err)
	}
	c.log.Info("provision state", "node", n.UUID, "event", event, "state", to, "from", from)
	c.metrics.transition(n, from, since, n.ProvisionUpdatedAt, event)
	c.recordState(n)
	switch {
	case to == provisioner.StateActive:
		c.record(n, events.ConductorActive, "")
	case event == EventFail:
		c.record(n, events.ConductorFailed, string(to)+": "+n.LastError)
	}
	return nil
}

// record tells the Recorder what happened to n.
func (c *Conductor) record(n *provisioner.Node, kind events.Kind, detail string) {
	who := events.Who{Node: n.UUID, NodeName: n.Name}
	c.cfg.Recorder.Record(events.Event{Kind: kind, Detail: detail, Who: who})
	if op, ok := fault.ConductorOp(kind); ok {
		c.cfg.Faults.Inject(fault.Conductor, who, op)
	}
}

// recordState records the provision state n is in now.
func (c *Conductor) recordState(n *provisioner.Node) {
	st := string(n.ProvisionState)
	if n.TargetProvisionState != "" {
		st += " → " + string(n.TargetProvisionState)
	}
	c.record(n, events.ConductorState, st)
}

// failNode takes the "fail" edge with last_error set, recording history.
func (c *Conductor) failNode(ctx context.Context, n *provisioner.Node, msg string) {
	n.LastError = msg
	if n.ProvisionState == provisioner.StateDeploying || n.ProvisionState == provisioner.StateWaitCallback {
		clearDeploySteps(n)
	}
	if err := c.transition(ctx, n, EventFail); err != nil {
		c.log.Error("fail node", "node", n.UUID, "state", n.ProvisionState, "err", err)
		return
	}
	c.history(ctx, n, "ERROR", "provisioning", msg)
}

// node resolves a UUID or name.
func (c *Conductor) node(ctx context.Context, ident string) (*provisioner.Node, error) {
	n, err := c.st.Node(ctx, ident)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &Error{Kind: KindNotFound, Msg: fmt.Sprintf("Node %s could not be found.", ident), Err: err}
	}
	return n, err
}

// Node returns a node by UUID or name.
func (c *Conductor) Node(ctx context.Context, ident string) (*provisioner.Node, error) {
	return c.node(ctx, ident)
}

// acquire takes the node's exclusive lock, retrying as Ironic does.
func (c *Conductor) acquire(ctx context.Context, ident string) (*provisioner.Node, error) {
	n, err := c.node(ctx, ident)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		got, err := c.st.ReserveNode(ctx, n.UUID, c.host)
		var le *store.LockedError
		if !errors.As(err, &le) {
			return got, err
		}
		if attempt >= c.cfg.LockRetries {
			return nil, &Error{Kind: KindLocked, Err: err, Msg: fmt.Sprintf(
				"Node %s is locked by host %s, please retry after the current operation is completed.", n.UUID, le.Holder)}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.cfg.LockRetryInterval):
		}
	}
}

// release drops the lock; a release that fails leaves a stale reservation
// that the next start clears.
func (c *Conductor) release(ctx context.Context, uuid string) {
	if err := c.st.ReleaseNode(context.WithoutCancel(ctx), uuid, c.host); err != nil {
		c.log.Error("release node", "node", uuid, "err", err)
	}
}

// spawn runs work as an asynchronous task holding n's lock. When the
// conductor stops mid-task, the node is left as it is (reservation and
// transient state included) for the next start to recover, as after a
// crash.
func (c *Conductor) spawn(n *provisioner.Node, name string, work func(ctx context.Context, n *provisioner.Node)) error {
	c.mu.Lock()
	ctx := c.runCtx
	if ctx == nil || ctx.Err() != nil {
		c.mu.Unlock()
		return &Error{Kind: KindUnavailable, Msg: "The conductor is not running."}
	}
	c.tasks.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.tasks.Done()
		work(ctx, n)
		if ctx.Err() != nil {
			c.log.Warn("task interrupted by shutdown", "node", n.UUID, "task", name)
			return
		}
		c.release(ctx, n.UUID)
	}()
	return nil
}

// hardware returns n's hardware type.
func (c *Conductor) hardware(n *provisioner.Node) (*drivers.HardwareType, error) {
	h, err := c.types.Get(n.Driver)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Err: err, Msg: fmt.Sprintf(
			"No valid host was found. Reason: No conductor service registered which supports driver %s for conductor group \"%s\".",
			n.Driver, n.ConductorGroup)}
	}
	return h, nil
}

func unsupported(driver string, role drivers.Role) string {
	return fmt.Sprintf("Driver %s does not support %s (disabled or not implemented).", driver, role)
}

// Alive reports whether a conductor record counts as alive now.
func (c *Conductor) Alive(rec provisioner.Conductor) bool {
	return rec.Online && c.now().Sub(rec.UpdatedAt) <= c.cfg.HeartbeatTimeout
}

// ConductorFor returns the live conductor serving n's driver, "" if none.
func (c *Conductor) ConductorFor(ctx context.Context, n *provisioner.Node) string {
	recs, err := c.st.Conductors(ctx)
	if err != nil {
		return ""
	}
	return c.ServingConductor(recs, n)
}

// ServingConductor picks, from conductor records read once, the live one
// serving n's driver and conductor group, "" if none.
func (c *Conductor) ServingConductor(recs []provisioner.Conductor, n *provisioner.Node) string {
	for _, r := range recs {
		if c.Alive(r) && r.ConductorGroup == n.ConductorGroup && slices.Contains(r.Drivers, n.Driver) {
			return r.Hostname
		}
	}
	return ""
}
