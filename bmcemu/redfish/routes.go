package redfish

import (
	"context"
	"fmt"
	"github.com/metalbed/metalbed/internal/events"
	"github.com/metalbed/metalbed/internal/fault"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// route is one row of the dispatch table.
type route struct {
	pattern string // net/http pattern with method
	public  bool   // no authentication needed
	handle  func(*request) error
}

// request is one authenticated request being answered.
type request struct {
	w   http.ResponseWriter
	r   *http.Request
	ctx context.Context
	who principal
}

// routes builds the dispatch table. Resources under a system answer only
// to the account of that system.
func (s *Server) routes() *http.ServeMux {
	const sys = "/redfish/v1/Systems/{sys}"
	const mgr = "/redfish/v1/Managers/{sys}"
	const chs = "/redfish/v1/Chassis/{sys}"
	table := []route{
		{"GET /redfish", true, s.getVersions},
		{"GET /redfish/{$}", true, s.getVersions},
		{"GET /redfish/v1", true, s.getRoot},
		{"GET /redfish/v1/{$}", true, s.getRoot},
		{"GET /redfish/v1/SessionService", false, s.getSessionService},
		{"GET /redfish/v1/SessionService/Sessions", false, s.getSessions},
		{"POST /redfish/v1/SessionService/Sessions", true, s.postSession},
		{"GET /redfish/v1/SessionService/Sessions/{id}", false, s.getSession},
		{"DELETE /redfish/v1/SessionService/Sessions/{id}", false, s.deleteSession},
		{"GET /redfish/v1/Systems", false, s.getSystems},
		{"GET " + sys, false, s.onSystem(s.getSystem)},
		{"PATCH " + sys, false, s.onSystem(s.patchSystem)},
		{"POST " + sys + "/Actions/ComputerSystem.Reset", false, s.onSystem(s.postReset)},
		{"GET " + sys + "/EthernetInterfaces", false, s.onSystem(s.getNICs)},
		{"GET " + sys + "/EthernetInterfaces/{nic}", false, s.onSystem(s.getNIC)},
		{"GET " + sys + "/Processors", false, s.onSystem(s.getProcessors)},
		{"GET " + sys + "/Processors/{cpu}", false, s.onSystem(s.getProcessor)},
		{"GET " + sys + "/SimpleStorage", false, s.onSystem(s.getSimpleStorages)},
		{"GET " + sys + "/SimpleStorage/{ctl}", false, s.onSystem(s.getSimpleStorage)},
		{"GET " + sys + "/Storage", false, s.onSystem(s.getStorages)},
		{"GET " + sys + "/Storage/{ctl}", false, s.onSystem(s.getStorage)},
		{"GET " + sys + "/Storage/{ctl}/Drives/{drive}", false, s.onSystem(s.getDrive)},
		{"GET " + sys + "/Bios", false, s.onSystem(s.getBios)},
		{"GET " + sys + "/Bios/Settings", false, s.onSystem(s.getBiosSettings)},
		{"PATCH " + sys + "/Bios/Settings", false, s.onSystem(s.patchBiosSettings)},
		{"POST " + sys + "/Bios/Actions/Bios.ResetBios", false, s.onSystem(s.postResetBios)},
		{"POST " + sys + "/Bios/Actions/Bios.ChangePassword", false, s.onSystem(s.postChangeBiosPassword)},
		{"GET " + sys + "/SecureBoot", false, s.onSystem(s.getSecureBoot)},
		{"PATCH " + sys + "/SecureBoot", false, s.onSystem(s.patchSecureBoot)},
		{"POST " + sys + "/SecureBoot/Actions/SecureBoot.ResetKeys", false, s.onSystem(s.postResetKeys)},
		{"GET /redfish/v1/Registries", false, s.getRegistries},
		{"GET /redfish/v1/Registries/{reg}", false, s.getRegistryFile},
		{"GET /redfish/v1/Registries/{reg}/{file}", false, s.getRegistry},
		{"GET /redfish/v1/Managers", false, s.getManagers},
		{"GET " + mgr, false, s.onSystem(s.getManager)},
		{"PATCH " + mgr, false, s.onSystem(s.patchManager)},
		{"GET " + mgr + "/VirtualMedia", false, s.onSystem(s.getMediaCollection)},
		{"GET " + mgr + "/VirtualMedia/{dev}", false, s.getMedia},
		{"POST " + mgr + "/VirtualMedia/{dev}/Actions/VirtualMedia.InsertMedia", false, s.postInsert},
		{"POST " + mgr + "/VirtualMedia/{dev}/Actions/VirtualMedia.EjectMedia", false, s.postEject},
		{"GET /redfish/v1/Chassis", false, s.getChassisCollection},
		{"GET " + chs, false, s.onSystem(s.getChassis)},
		{"GET " + chs + "/Power", false, s.onSystem(s.getPower)},
		{"GET " + chs + "/Thermal", false, s.onSystem(s.getThermal)},
		{"GET " + taskServicePath, false, s.getTaskService},
		{"GET " + tasksPath, false, s.getTasks},
		{"GET " + tasksPath + "/{id}", false, s.getTask},
		{"GET " + monitorsPath + "/{id}", false, s.getTaskMonitor},
		{"GET " + updateServicePath, false, s.getUpdateService},
		{"POST " + simpleUpdatePath, false, s.postSimpleUpdate},
		{"GET " + inventoryPath, false, s.getFirmwareInventory},
		{"GET " + inventoryPath + "/{fw}", false, s.getFirmware},
	}
	table = append(table, s.logRoutes()...)
	mux := http.NewServeMux()
	for _, rt := range table {
		mux.HandleFunc(rt.pattern, s.handler(rt))
	}
	// Everything else: a Redfish 404, or 405 where the path exists.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pat := mux.Handler(probe); pat != "/" && pat != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, errMethod(r.Method, r.URL.Path))
			return
		}
		writeError(w, errNotFound(r.URL.Path))
	})
	return mux
}

// handler wraps a route: authentication, body limit, the error answer.
func (s *Server) handler(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		req := &request{w: w, r: r, ctx: r.Context()}
		if err := s.unavailable(w, r); err != nil {
			writeError(w, err)
			return
		}
		if !rt.public {
			p, err := s.auth.authenticate(r)
			if err != nil {
				s.log.Debug("redfish unauthorized", "path", r.URL.Path, "ip", r.RemoteAddr)
				writeError(w, err)
				return
			}
			req.who = p
			if err := s.sessionFault(req); err != nil {
				writeError(w, err)
				return
			}
		}
		if err := s.fault(req); err != nil {
			writeError(w, err)
			return
		}
		if err := rt.handle(req); err != nil {
			if _, ok := err.(*apiError); !ok {
				s.log.Warn("redfish request failed", "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	}
}

// ok writes v with its ETag.
func (q *request) ok(v any) error {
	tag, err := etagOf(v)
	if err != nil {
		return err
	}
	q.w.Header().Set("ETag", tag)
	q.w.Header().Set("Cache-Control", "no-cache")
	writeJSON(q.w, http.StatusOK, v)
	return nil
}

func (q *request) noContent() error {
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// onSystem is a route of one system's resources: the handler gets the
// system {sys} names, once q's account may see it.
func (s *Server) onSystem(h func(q *request, sys *system) error) func(*request) error {
	return func(q *request) error {
		sys, err := s.system(q)
		if err != nil {
			return err
		}
		return h(q, sys)
	}
}

// system resolves {sys} (UUID or name) to a system q's account manages.
func (s *Server) system(q *request) (*system, error) {
	sys, ok := s.byID[strings.ToLower(q.r.PathValue("sys"))]
	if !ok {
		sys, ok = s.byID[q.r.PathValue("sys")]
	}
	if !ok {
		return nil, errNotFound(q.r.URL.Path)
	}
	if !sys.visibleTo(q.who) {
		return nil, errForbidden()
	}
	if sys.latency > 0 {
		select {
		case <-time.After(sys.latency):
		case <-q.ctx.Done():
			return nil, q.ctx.Err()
		}
	}
	return sys, nil
}

func (q *request) machineCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(q.ctx, machineTimeout)
}

func (s *Server) getVersions(q *request) error {
	return q.ok(versions{V1: "/redfish/v1/"})
}

func (s *Server) getRoot(q *request) error {
	return q.ok(serviceRoot{
		resource:       resource{ODataID: "/redfish/v1/", ODataType: "#ServiceRoot.v1_5_0.ServiceRoot", ID: "RootService", Name: "metalbed Redfish service"},
		RedfishVersion: "1.6.0",
		UUID:           "5a1ec7ed-0000-4000-8000-6d6574616c62",
		Systems:        odataID{"/redfish/v1/Systems"},
		Managers:       odataID{"/redfish/v1/Managers"},
		Chassis:        odataID{"/redfish/v1/Chassis"},
		SessionService: odataID{"/redfish/v1/SessionService"},
		Registries:     odataID{registriesPath},
		Tasks:          odataID{taskServicePath},
		UpdateService:  odataID{updateServicePath},
		Links:          serviceRootLink{Sessions: odataID{"/redfish/v1/SessionService/Sessions"}},
	})
}

func (s *Server) getSessionService(q *request) error {
	return q.ok(sessionService{
		resource:       resource{ODataID: "/redfish/v1/SessionService", ODataType: "#SessionService.v1_1_8.SessionService", ID: "SessionService", Name: "Session Service"},
		ServiceEnabled: true,
		SessionTimeout: int(s.cfg.SessionTimeout.Seconds()),
		Sessions:       odataID{"/redfish/v1/SessionService/Sessions"},
		Status:         enabledOK,
	})
}

const sessionsPath = "/redfish/v1/SessionService/Sessions"

func (s *Server) getSessions(q *request) error {
	var members []string
	for _, id := range s.auth.list(q.who) {
		members = append(members, sessionsPath+"/"+id)
	}
	return q.ok(newCollection(sessionsPath, "#SessionCollection.SessionCollection", "Session Collection", members))
}

func sessionView(ls *loginSession) session {
	return session{
		resource: resource{ODataID: sessionsPath + "/" + ls.id, ODataType: "#Session.v1_3_0.Session", ID: ls.id, Name: "User Session"},
		UserName: ls.user,
	}
}

func (s *Server) postSession(q *request) error {
	var req sessionRequest
	if err := decodeBody(q.r.Body, &req, false); err != nil {
		return err
	}
	if req.UserName == nil {
		return errMissing("UserName")
	}
	if req.Password == nil {
		return errMissing("Password")
	}
	ls, err := s.auth.create(*req.UserName, *req.Password)
	if err != nil {
		s.log.Debug("redfish login refused", "ip", q.r.RemoteAddr)
		return err
	}
	v := sessionView(ls)
	q.w.Header().Set("X-Auth-Token", ls.token)
	q.w.Header().Set("Location", v.ODataID)
	writeJSON(q.w, http.StatusCreated, v)
	return nil
}

func (s *Server) getSession(q *request) error {
	ls, ok := s.auth.get(q.who, q.r.PathValue("id"))
	if !ok {
		return errNotFound(q.r.URL.Path)
	}
	return q.ok(sessionView(ls))
}

func (s *Server) deleteSession(q *request) error {
	if !s.auth.remove(q.who, q.r.PathValue("id")) {
		return errNotFound(q.r.URL.Path)
	}
	return q.noContent()
}

// visible lists the paths of the systems q's account manages under base.
func (s *Server) visible(q *request, path func(*system) string) []string {
	var out []string
	for _, sys := range s.systems {
		if sys.visibleTo(q.who) {
			out = append(out, path(sys))
		}
	}
	return out
}

func (s *Server) getSystems(q *request) error {
	return q.ok(newCollection("/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection",
		"Computer System Collection", s.visible(q, (*system).path)))
}

func (s *Server) getSystem(q *request, sys *system) error {
	ctx, cancel := q.machineCtx()
	defer cancel()
	v, err := sys.view(ctx)
	if err != nil {
		return err
	}
	return q.ok(v)
}

func (s *Server) patchSystem(q *request, sys *system) error {
	var p systemPatch
	if err := decodeBody(q.r.Body, &p, false); err != nil {
		return err
	}
	ctx, cancel := q.machineCtx()
	defer cancel()
	if match := q.r.Header.Values("If-Match"); len(match) > 0 {
		cur, err := sys.view(ctx)
		if err != nil {
			return err
		}
		tag, err := etagOf(cur)
		if err != nil {
			return err
		}
		if !ifMatch(match, tag) {
			return errPrecondition()
		}
	}
	if p.Boot != nil {
		if err := sys.patchBoot(ctx, p.Boot); err != nil {
			return err
		}
	}
	v, err := sys.view(ctx)
	if err != nil {
		return err
	}
	return q.ok(v)
}

func (s *Server) postReset(q *request, sys *system) error {
	var req resetRequest
	if err := decodeBody(q.r.Body, &req, false); err != nil {
		return err
	}
	if req.ResetType == nil {
		return errMissing("ResetType")
	}
	ctx, cancel := q.machineCtx()
	defer cancel()
	if err := sys.reset(ctx, *req.ResetType); err != nil {
		return err
	}
	return q.noContent()
}

func nicID(i int) string { return "NIC" + strconv.Itoa(i) }

func (s *Server) getNICs(q *request, sys *system) error {
	var m []string
	for i := range sys.hw.MACs {
		m = append(m, sys.path()+"/EthernetInterfaces/"+nicID(i))
	}
	return q.ok(newCollection(sys.path()+"/EthernetInterfaces", "#EthernetInterfaceCollection.EthernetInterfaceCollection", "Ethernet Interface Collection", m))
}

func (s *Server) getNIC(q *request, sys *system) error {
	for i, mac := range sys.hw.MACs {
		if q.r.PathValue("nic") != nicID(i) {
			continue
		}
		return q.ok(ethernetInterface{
			resource:            resource{ODataID: sys.path() + "/EthernetInterfaces/" + nicID(i), ODataType: "#EthernetInterface.v1_6_0.EthernetInterface", ID: nicID(i), Name: "Ethernet Interface " + strconv.Itoa(i)},
			MACAddress:          mac.String(),
			PermanentMACAddress: mac.String(),
			InterfaceEnabled:    true,
			LinkStatus:          "LinkUp",
			Status:              enabledOK,
		})
	}
	return errNotFound(q.r.URL.Path)
}

func cpuID(i int) string { return "CPU" + strconv.Itoa(i) }

func (s *Server) getProcessors(q *request, sys *system) error {
	var m []string
	for i := range sys.hw.CPUs {
		m = append(m, sys.path()+"/Processors/"+cpuID(i))
	}
	return q.ok(newCollection(sys.path()+"/Processors", "#ProcessorCollection.ProcessorCollection", "Processors Collection", m))
}

func (s *Server) getProcessor(q *request, sys *system) error {
	for i := range sys.hw.CPUs {
		if q.r.PathValue("cpu") != cpuID(i) {
			continue
		}
		return q.ok(processor{
			resource:              resource{ODataID: sys.path() + "/Processors/" + cpuID(i), ODataType: "#Processor.v1_7_0.Processor", ID: cpuID(i), Name: "Processor " + strconv.Itoa(i)},
			Socket:                cpuID(i),
			ProcessorType:         "CPU",
			ProcessorArchitecture: "x86",
			InstructionSet:        "x86-64",
			Manufacturer:          "metalbed",
			Model:                 "metalbed virtual CPU",
			TotalCores:            1,
			TotalThreads:          1,
			Status:                enabledOK,
		})
	}
	return errNotFound(q.r.URL.Path)
}

// The one storage controller and its one disk.
const (
	storageID = "1"
	driveID   = "Disk0"
)

func (s *Server) getSimpleStorages(q *request, sys *system) error {
	return q.ok(newCollection(sys.path()+"/SimpleStorage", "#SimpleStorageCollection.SimpleStorageCollection", "Simple Storage Collection",
		[]string{sys.path() + "/SimpleStorage/" + storageID}))
}

func (s *Server) getSimpleStorage(q *request, sys *system) error {
	if q.r.PathValue("ctl") != storageID {
		return errNotFound(q.r.URL.Path)
	}
	v := simpleStorage{
		resource: resource{ODataID: sys.path() + "/SimpleStorage/" + storageID, ODataType: "#SimpleStorage.v1_2_0.SimpleStorage", ID: storageID, Name: "Simple Storage Controller"},
		Devices:  []simpleDevice{},
		Status:   enabledOK,
	}
	if sys.hw.DiskBytes > 0 {
		v.Devices = append(v.Devices, simpleDevice{Name: driveID, CapacityBytes: sys.hw.DiskBytes, Status: enabledOK})
	}
	return q.ok(v)
}

func (s *Server) getStorages(q *request, sys *system) error {
	return q.ok(newCollection(sys.path()+"/Storage", "#StorageCollection.StorageCollection", "Storage Collection",
		[]string{sys.path() + "/Storage/" + storageID}))
}

func (s *Server) getStorage(q *request, sys *system) error {
	if q.r.PathValue("ctl") != storageID {
		return errNotFound(q.r.URL.Path)
	}
	p := sys.path() + "/Storage/" + storageID
	v := storage{
		resource: resource{ODataID: p, ODataType: "#Storage.v1_8_0.Storage", ID: storageID, Name: "Storage"},
		Drives:   []odataID{},
		Controllers: []storageController{{
			MemberID: "0", Name: "Virtual SATA controller",
			SupportedProtocols: []string{"PCIe"}, SupportedDeviceProt: []string{"SATA"}, Status: enabledOK,
		}},
		Status: enabledOK,
	}
	if sys.hw.DiskBytes > 0 {
		v.Drives = append(v.Drives, odataID{p + "/Drives/" + driveID})
	}
	v.Count = len(v.Drives)
	return q.ok(v)
}

func (s *Server) getDrive(q *request, sys *system) error {
	if q.r.PathValue("ctl") != storageID || q.r.PathValue("drive") != driveID || sys.hw.DiskBytes <= 0 {
		return errNotFound(q.r.URL.Path)
	}
	return q.ok(drive{
		resource:      resource{ODataID: sys.path() + "/Storage/" + storageID + "/Drives/" + driveID, ODataType: "#Drive.v1_9_0.Drive", ID: driveID, Name: "Local disk"},
		CapacityBytes: sys.hw.DiskBytes,
		MediaType:     "HDD",
		Protocol:      "SATA",
		Status:        enabledOK,
	})
}

func (s *Server) getManagers(q *request) error {
	return q.ok(newCollection("/redfish/v1/Managers", "#ManagerCollection.ManagerCollection", "Manager Collection",
		s.visible(q, (*system).managerPath)))
}

func (s *Server) getManager(q *request, sys *system) error {
	return q.ok(s.managerView(sys))
}

// managerView is sys's Manager as a client reads it.
func (s *Server) managerView(sys *system) manager {
	dateTime, zone := sys.clock.now(s.cfg.Now())
	bmcVersion, _ := sys.fw.versions()
	return manager{
		resource:            resource{ODataID: sys.managerPath(), ODataType: "#Manager.v1_10_0.Manager", ID: sys.id, Name: "BMC of " + sys.hw.Name},
		ManagerType:         "BMC",
		FirmwareVersion:     bmcVersion,
		DateTime:            dateTime,
		DateTimeLocalOffset: zone,
		UUID:                sys.id,
		Status:              enabledOK,
		PowerState:          "On",
		VirtualMedia:        odataID{sys.managerPath() + "/VirtualMedia"},
		LogServices:         odataID{sys.managerPath() + "/LogServices"},
		Links: managerLinks{
			ManagerForServers: []odataID{{sys.path()}},
			ManagerForChassis: []odataID{{sys.chassisPath()}},
		},
	}
}

func (s *Server) getMediaCollection(q *request, sys *system) error {
	var m []string
	for _, md := range sys.media {
		m = append(m, sys.managerPath()+"/VirtualMedia/"+md.id)
	}
	return q.ok(newCollection(sys.managerPath()+"/VirtualMedia", "#VirtualMediaCollection.VirtualMediaCollection", "Virtual Media Collection", m))
}

func (s *Server) media(q *request) (*system, *media, error) {
	sys, err := s.system(q)
	if err != nil {
		return nil, nil, err
	}
	md := sys.mediaByID(q.r.PathValue("dev"))
	if md == nil {
		return nil, nil, errNotFound(q.r.URL.Path)
	}
	return sys, md, nil
}

func (s *Server) getMedia(q *request) error {
	sys, md, err := s.media(q)
	if err != nil {
		return err
	}
	return q.ok(sys.mediaView(md))
}

func (s *Server) postInsert(q *request) error {
	sys, md, err := s.media(q)
	if err != nil {
		return err
	}
	var req insertMediaRequest
	if err := decodeBody(q.r.Body, &req, false); err != nil {
		return err
	}
	ctx, cancel := q.machineCtx()
	defer cancel()
	if err := sys.insert(ctx, md, req); err != nil {
		return err
	}
	return q.noContent()
}

func (s *Server) postEject(q *request) error {
	sys, md, err := s.media(q)
	if err != nil {
		return err
	}
	var req struct{}
	if err := decodeBody(q.r.Body, &req, true); err != nil {
		return err
	}
	ctx, cancel := q.machineCtx()
	defer cancel()
	if err := sys.eject(ctx, md); err != nil {
		return err
	}
	return q.noContent()
}

func (s *Server) getChassisCollection(q *request) error {
	return q.ok(newCollection("/redfish/v1/Chassis", "#ChassisCollection.ChassisCollection", "Chassis Collection",
		s.visible(q, (*system).chassisPath)))
}

func (s *Server) getChassis(q *request, sys *system) error {
	ctx, cancel := q.machineCtx()
	defer cancel()
	on, err := sys.m.PowerState(ctx)
	if err != nil {
		return fmt.Errorf("power state: %w", err)
	}
	return q.ok(chassis{
		resource:     resource{ODataID: sys.chassisPath(), ODataType: "#Chassis.v1_11_0.Chassis", ID: sys.id, Name: "Chassis of " + sys.hw.Name},
		ChassisType:  "RackMount",
		Manufacturer: "metalbed",
		PowerState:   powerState(on),
		Status:       enabledOK,
		Power:        odataID{sys.chassisPath() + "/Power"},
		Thermal:      odataID{sys.chassisPath() + "/Thermal"},
		Links: chassisLinks{
			ComputerSystems: []odataID{{sys.path()}},
			ManagedBy:       []odataID{{sys.managerPath()}},
		},
	})
}

// requestOp is the op a request is asked about: its method, and for an
// action its name too ("POST VirtualMedia.InsertMedia"), so that a rule
// can hit one action (fault.Rule.Op "VirtualMedia.InsertMedia").
func requestOp(r *http.Request) string {
	if _, action, ok := strings.Cut(r.URL.Path, "/Actions/"); ok && action != "" {
		return r.Method + " " + action
	}
	return r.Method
}

// fault asks the Injector about a request to one machine's resources
// ({sys} names it) and carries the hit out: a delay, then for "status" the
// error to answer with.
func (s *Server) fault(q *request) error {
	if s.cfg.Faults == nil || q.r.PathValue("sys") == "" {
		return nil
	}
	sys, ok := s.byID[strings.ToLower(q.r.PathValue("sys"))]
	if !ok {
		sys, ok = s.byID[q.r.PathValue("sys")]
	}
	if !ok {
		return nil // answered 404 by the route
	}
	h, ok := s.cfg.Faults.Inject(fault.Redfish, events.Who{Machine: sys.hw.Name}, requestOp(q.r))
	if !ok {
		return nil
	}
	if h.Delay > 0 {
		select {
		case <-time.After(h.Delay):
		case <-q.ctx.Done():
			return q.ctx.Err()
		}
	}
	if h.Action != "status" {
		return nil
	}
	code, err := h.ArgInt()
	if err != nil || code < 400 || code > 599 {
		code = http.StatusInternalServerError
	}
	return &apiError{int(code), "GeneralError", fmt.Sprintf("injected fault %s: %s %s answered %d", h.RuleID, q.r.Method, q.r.URL.Path, code)}
}
