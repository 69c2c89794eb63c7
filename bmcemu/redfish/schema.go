package redfish

// The resources below marshal to the DMTF Redfish schemas (DSP8010) in the
// versions named by their @odata.type. Only the properties this service
// fills are declared.

// odataID is a reference to another resource.
type odataID struct {
	ID string `json:"@odata.id"`
}

// resource is the header every resource carries.
type resource struct {
	ODataID   string `json:"@odata.id"`
	ODataType string `json:"@odata.type"`
	ID        string `json:"Id,omitempty"`
	Name      string `json:"Name"`
}

type status struct {
	State  string `json:"State"`
	Health string `json:"Health,omitempty"`
}

var enabledOK = &status{State: "Enabled", Health: "OK"}

type collection struct {
	ODataID   string    `json:"@odata.id"`
	ODataType string    `json:"@odata.type"`
	Name      string    `json:"Name"`
	Members   []odataID `json:"Members"`
	Count     int       `json:"Members@odata.count"`
}

func newCollection(id, typ, name string, members []string) collection {
	c := collection{ODataID: id, ODataType: typ, Name: name, Members: []odataID{}}
	for _, m := range members {
		c.Members = append(c.Members, odataID{m})
	}
	c.Count = len(c.Members)
	return c
}

// versions is GET /redfish: the protocol versions and their roots.
type versions struct {
	V1 string `json:"v1"`
}

type serviceRoot struct {
	resource
	RedfishVersion string          `json:"RedfishVersion"`
	UUID           string          `json:"UUID"`
	Systems        odataID         `json:"Systems"`
	Managers       odataID         `json:"Managers"`
	Chassis        odataID         `json:"Chassis"`
	SessionService odataID         `json:"SessionService"`
	Registries     odataID         `json:"Registries"`
	Tasks          odataID         `json:"Tasks"` // the TaskService
	UpdateService  odataID         `json:"UpdateService"`
	Links          serviceRootLink `json:"Links"`
}

type serviceRootLink struct {
	Sessions odataID `json:"Sessions"`
}

type sessionService struct {
	resource
	ServiceEnabled bool    `json:"ServiceEnabled"`
	SessionTimeout int     `json:"SessionTimeout"`
	Sessions       odataID `json:"Sessions"`
	Status         *status `json:"Status"`
}

type session struct {
	resource
	UserName string `json:"UserName"`
}

type computerSystem struct {
	resource
	UUID          string        `json:"UUID"`
	HostName      string        `json:"HostName"`
	SystemType    string        `json:"SystemType"`
	Manufacturer  string        `json:"Manufacturer"`
	Model         string        `json:"Model"`
	SerialNumber  string        `json:"SerialNumber"`
	BiosVersion   string        `json:"BiosVersion"`
	PowerState    string        `json:"PowerState"`
	Status        *status       `json:"Status"`
	Boot          boot          `json:"Boot"`
	BootProgress  bootProgress  `json:"BootProgress"`
	ProcSummary   procSummary   `json:"ProcessorSummary"`
	MemSummary    memSummary    `json:"MemorySummary"`
	Processors    odataID       `json:"Processors"`
	EthernetIfs   odataID       `json:"EthernetInterfaces"`
	SimpleStorage odataID       `json:"SimpleStorage"`
	Storage       odataID       `json:"Storage"`
	Bios          odataID       `json:"Bios"`
	SecureBoot    odataID       `json:"SecureBoot"`
	LogServices   odataID       `json:"LogServices"`
	Links         systemLinks   `json:"Links"`
	Actions       systemActions `json:"Actions"`
}

type boot struct {
	Enabled        string   `json:"BootSourceOverrideEnabled"`
	Mode           string   `json:"BootSourceOverrideMode"`
	Target         string   `json:"BootSourceOverrideTarget"`
	AllowedTargets []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
	HTTPBootURI    string   `json:"HttpBootUri,omitempty"`
}

type bootProgress struct {
	LastState string `json:"LastState"`
}

type procSummary struct {
	Count  int     `json:"Count"`
	Status *status `json:"Status"`
}

type memSummary struct {
	TotalSystemMemoryGiB float64 `json:"TotalSystemMemoryGiB"`
	Status               *status `json:"Status"`
}

type systemLinks struct {
	ManagedBy []odataID `json:"ManagedBy"`
	Chassis   []odataID `json:"Chassis"`
}

type systemActions struct {
	Reset action `json:"#ComputerSystem.Reset"`
}

type action struct {
	Target  string   `json:"target"`
	Allowed []string `json:"ResetType@Redfish.AllowableValues,omitempty"`
}

type ethernetInterface struct {
	resource
	MACAddress          string  `json:"MACAddress"`
	PermanentMACAddress string  `json:"PermanentMACAddress"`
	InterfaceEnabled    bool    `json:"InterfaceEnabled"`
	LinkStatus          string  `json:"LinkStatus"`
	Status              *status `json:"Status"`
}

type processor struct {
	resource
	Socket                string  `json:"Socket"`
	ProcessorType         string  `json:"ProcessorType"`
	ProcessorArchitecture string  `json:"ProcessorArchitecture"`
	InstructionSet        string  `json:"InstructionSet"`
	Manufacturer          string  `json:"Manufacturer"`
	Model                 string  `json:"Model"`
	TotalCores            int     `json:"TotalCores"`
	TotalThreads          int     `json:"TotalThreads"`
	Status                *status `json:"Status"`
}

type simpleStorage struct {
	resource
	Devices []simpleDevice `json:"Devices"`
	Status  *status        `json:"Status"`
}

type simpleDevice struct {
	Name          string  `json:"Name"`
	CapacityBytes int64   `json:"CapacityBytes"`
	Status        *status `json:"Status"`
}

type storage struct {
	resource
	Drives      []odataID           `json:"Drives"`
	Count       int                 `json:"Drives@odata.count"`
	Controllers []storageController `json:"StorageControllers"`
	Status      *status             `json:"Status"`
}

type storageController struct {
	MemberID            string   `json:"MemberId"`
	Name                string   `json:"Name"`
	SupportedProtocols  []string `json:"SupportedControllerProtocols"`
	SupportedDeviceProt []string `json:"SupportedDeviceProtocols"`
	Status              *status  `json:"Status"`
}

type drive struct {
	resource
	CapacityBytes int64   `json:"CapacityBytes"`
	MediaType     string  `json:"MediaType"`
	Protocol      string  `json:"Protocol"`
	Status        *status `json:"Status"`
}

type manager struct {
	resource
	ManagerType         string       `json:"ManagerType"`
	FirmwareVersion     string       `json:"FirmwareVersion"`
	DateTime            string       `json:"DateTime"`
	DateTimeLocalOffset string       `json:"DateTimeLocalOffset"`
	UUID                string       `json:"UUID"`
	Status              *status      `json:"Status"`
	PowerState          string       `json:"PowerState"`
	VirtualMedia        odataID      `json:"VirtualMedia"`
	LogServices         odataID      `json:"LogServices"`
	Links               managerLinks `json:"Links"`
}

type managerLinks struct {
	ManagerForServers []odataID `json:"ManagerForServers"`
	ManagerForChassis []odataID `json:"ManagerForChassis"`
}

type virtualMedia struct {
	resource
	MediaTypes     []string     `json:"MediaTypes"`
	Image          *string      `json:"Image"`
	ImageName      string       `json:"ImageName"`
	Inserted       bool         `json:"Inserted"`
	WriteProtected bool         `json:"WriteProtected"`
	ConnectedVia   string       `json:"ConnectedVia"`
	Actions        mediaActions `json:"Actions"`
}

type mediaActions struct {
	Insert action `json:"#VirtualMedia.InsertMedia"`
	Eject  action `json:"#VirtualMedia.EjectMedia"`
}

type chassis struct {
	resource
	ChassisType  string       `json:"ChassisType"`
	Manufacturer string       `json:"Manufacturer"`
	PowerState   string       `json:"PowerState"`
	Status       *status      `json:"Status"`
	Power        odataID      `json:"Power"`
	Thermal      odataID      `json:"Thermal"`
	Links        chassisLinks `json:"Links"`
}

type chassisLinks struct {
	ComputerSystems []odataID `json:"ComputerSystems"`
	ManagedBy       []odataID `json:"ManagedBy"`
}

// errorBody is the Redfish error response (DSP0266 §9.7.2).
type errorBody struct {
	Error errorInfo `json:"error"`
}

type errorInfo struct {
	Code         string    `json:"code"`
	Message      string    `json:"message"`
	ExtendedInfo []message `json:"@Message.ExtendedInfo"`
}

type message struct {
	ODataType  string `json:"@odata.type"`
	MessageID  string `json:"MessageId"`
	Message    string `json:"Message"`
	Severity   string `json:"Severity"`
	Resolution string `json:"Resolution,omitempty"`
}

// Request bodies. Pointer fields tell absent from zero.

type sessionRequest struct {
	UserName *string `json:"UserName"`
	Password *string `json:"Password"`
}

type systemPatch struct {
	Boot *bootPatch `json:"Boot"`
}

type bootPatch struct {
	Enabled     *string `json:"BootSourceOverrideEnabled"`
	Mode        *string `json:"BootSourceOverrideMode"`
	Target      *string `json:"BootSourceOverrideTarget"`
	HTTPBootURI *string `json:"HttpBootUri"`
}

type resetRequest struct {
	ResetType *string `json:"ResetType"`
}

type insertMediaRequest struct {
	Image                *string `json:"Image"`
	Inserted             *bool   `json:"Inserted"`
	WriteProtected       *bool   `json:"WriteProtected"`
	TransferMethod       *string `json:"TransferMethod"`
	TransferProtocolType *string `json:"TransferProtocolType"`
	UserName             *string `json:"UserName"`
	Password             *string `json:"Password"`
}
