// Command runc-in-bounds runs runc with a container's configuration narrowed to what this
// machine's kernel lets the caller grant. These VMs' processes all lack CAP_SYS_RESOURCE,
// which has two effects that it works around:
//   - a container asking for every capability (`docker run --privileged`, as kind runs its
//     nodes) fails with "unable to apply caps": each capability set is narrowed to this
//     process's bounding set;
//   - lowering a process's oom_score_adj below its parent's needs CAP_SYS_RESOURCE, so the
//     kubelet's -997 (Guaranteed pods) and -998 (critical pods) make runc fail with "failed
//     to update /proc/self/oom_score_adj": a lower oomScoreAdj is raised to this process's own.
//
// It edits the bundle's config.json before `create` or `run`, and the process file of an
// `exec`, then execs the real runc ($MEMKUBE_RUNC, default /usr/sbin/runc) with the same
// arguments. hack/dockerd-up.sh makes it dockerd's default runtime; the kind node image makes
// it containerd's runc binary.
package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capability numbers 0..40, as in linux/capability.h
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
	"SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
	"NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
	"SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
	"PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

func bounding() map[string]bool {
	allowed := map[string]bool{}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			if err != nil {
				return nil
			}
			for bit, name := range capNames {
				if mask>>uint(bit)&1 == 1 {
					allowed["CAP_"+name] = true
				}
			}
		}
	}
	return allowed
}

func ownOOMScoreAdj() (float64, bool) {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	return float64(v), err == nil
}

// narrowProcess edits one OCI process object; reports whether it changed.
func narrowProcess(process map[string]any) bool {
	changed := false
	if caps, ok := process["capabilities"].(map[string]any); ok {
		if allowed := bounding(); allowed != nil {
			for set, v := range caps {
				names, _ := v.([]any)
				kept := []any{}
				for _, n := range names {
					if s, _ := n.(string); allowed[s] {
						kept = append(kept, n)
					}
				}
				if len(kept) != len(names) {
					caps[set] = kept
					changed = true
				}
			}
		}
	}
	if adj, ok := process["oomScoreAdj"].(float64); ok {
		if own, ok := ownOOMScoreAdj(); ok && adj < own {
			process["oomScoreAdj"] = own
			changed = true
		}
	}
	return changed
}

func edit(path string, isProcessFile bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var doc map[string]any
	if json.Unmarshal(data, &doc) != nil {
		return
	}
	process := doc
	if !isProcessFile {
		process, _ = doc["process"].(map[string]any)
		if process == nil {
			return
		}
	}
	if !narrowProcess(process) {
		return
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return
	}
	tmp := path + ".in-bounds"
	if os.WriteFile(tmp, out, 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

func option(args []string, names ...string) string {
	for i, arg := range args {
		for _, name := range names {
			if arg == name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(arg, name+"="); ok {
				return v
			}
		}
	}
	return ""
}

func has(args []string, word string) bool {
	for _, a := range args {
		if a == word {
			return true
		}
	}
	return false
}

func main() {
	args := os.Args[1:]
	switch {
	case has(args, "create") || has(args, "run"):
		bundle := option(args, "--bundle", "-b")
		if bundle == "" {
			bundle = "."
		}
		edit(filepath.Join(bundle, "config.json"), false)
	case has(args, "exec"):
		if p := option(args, "--process", "-p"); p != "" {
			edit(p, true)
		}
	}
	runc := os.Getenv("MEMKUBE_RUNC")
	if runc == "" {
		runc = "/usr/sbin/runc"
	}
	err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	os.Stderr.WriteString("runc-in-bounds: exec " + runc + ": " + err.Error() + "\n")
	os.Exit(127)
}
