package nomad

import "fmt"

// NodeNameEnv is the variable the rendered job sets to the node's name
// (${node.unique.name}): Nomad itself exports no node-name variable.
const NodeNameEnv = "ROLLGUARD_NOMAD_NODE_NAME"

// Alloc is the Nomad allocation a run executes in, from the variables
// Nomad sets in every task's environment.
type Alloc struct {
	// AllocID is NOMAD_ALLOC_ID; ShortAllocID its first 8 characters
	// (NOMAD_SHORT_ALLOC_ID); AllocName is NOMAD_ALLOC_NAME
	// (<job>.<group>[<index>]).
	AllocID      string
	ShortAllocID string
	AllocName    string
	// JobID is NOMAD_JOB_ID: for a periodic launch, the child job
	// (<job>/periodic-<unix time>); ParentJobID (NOMAD_JOB_PARENT_ID) is
	// then the periodic job itself. JobName is NOMAD_JOB_NAME.
	JobID       string
	JobName     string
	ParentJobID string
	// GroupName and TaskName are NOMAD_GROUP_NAME and NOMAD_TASK_NAME.
	GroupName string
	TaskName  string
	// Namespace, Region and Datacenter are NOMAD_NAMESPACE, NOMAD_REGION
	// and NOMAD_DC.
	Namespace  string
	Region     string
	Datacenter string
	// NodeName is NodeNameEnv, set by the rendered job; empty otherwise.
	NodeName string
}

// AllocationFromEnv reads the allocation context; ok is false outside a
// Nomad task (NOMAD_ALLOC_ID unset). getenv is os.Getenv in production.
func AllocationFromEnv(getenv func(string) string) (Alloc, bool) {
	a := Alloc{
		AllocID:      getenv("NOMAD_ALLOC_ID"),
		ShortAllocID: getenv("NOMAD_SHORT_ALLOC_ID"),
		AllocName:    getenv("NOMAD_ALLOC_NAME"),
		JobID:        getenv("NOMAD_JOB_ID"),
		JobName:      getenv("NOMAD_JOB_NAME"),
		ParentJobID:  getenv("NOMAD_JOB_PARENT_ID"),
		GroupName:    getenv("NOMAD_GROUP_NAME"),
		TaskName:     getenv("NOMAD_TASK_NAME"),
		Namespace:    getenv("NOMAD_NAMESPACE"),
		Region:       getenv("NOMAD_REGION"),
		Datacenter:   getenv("NOMAD_DC"),
		NodeName:     getenv(NodeNameEnv),
	}
	if a.AllocID == "" {
		return Alloc{}, false
	}
	if a.ShortAllocID == "" && len(a.AllocID) >= 8 {
		a.ShortAllocID = a.AllocID[:8]
	}
	return a, true
}

// Where describes the allocation for a lock holder or a report:
// "nomad alloc 5b3c9a1e job web-rollout/periodic-1795674031 node vm".
func (a Alloc) Where() string {
	s := fmt.Sprintf("nomad alloc %s job %s", a.ShortAllocID, a.JobID)
	if a.NodeName != "" {
		s += " node " + a.NodeName
	}
	return s
}
