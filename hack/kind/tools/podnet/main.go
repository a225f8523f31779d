// Command podnet gives the pods of a local kind cluster their network (the job kindnetd does
// upstream), as a host-network DaemonSet on every node:
//   - it writes this node's CNI configuration: the ptp plugin with host-local addresses from
//     the node's spec.podCIDR, so each pod gets a veth pair routed from the node;
//   - it keeps a route to every other node's pod range via that node's InternalIP, so pods
//     on different nodes reach each other over the nodes' own (Docker bridge) network.
//
// Nothing is masqueraded: pod traffic has no way off the nodes' network.
// It reads Nodes through the API with the pod's service account (standard library only) and
// sets routes with `ip route replace` (busybox in the image).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			PodCIDR string `json:"podCIDR"`
		} `json:"spec"`
		Status struct {
			Addresses []struct {
				Type    string `json:"type"`
				Address string `json:"address"`
			} `json:"addresses"`
		} `json:"status"`
	} `json:"items"`
}

func client() (*http.Client, string, error) {
	ca, err := os.ReadFile(filepath.Join(serviceAccount, "ca.crt"))
	if err != nil {
		return nil, "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	return &http.Client{Transport: transport, Timeout: 20 * time.Second},
		fmt.Sprintf("https://%s:%s", host, port), nil
}

func nodes(c *http.Client, base string) (*nodeList, error) {
	token, err := os.ReadFile(filepath.Join(serviceAccount, "token"))
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET nodes: %s", resp.Status)
	}
	var list nodeList
	return &list, json.NewDecoder(resp.Body).Decode(&list)
}

func cniConfig(podCIDR string) []byte {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "podnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    1400,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": [][]map[string]string{{{"subnet": podCIDR}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	out, _ := json.MarshalIndent(conf, "", "  ")
	return out
}

func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	log.Printf("writing %s", path)
	return os.Rename(tmp, path)
}

func sync(c *http.Client, base, hostIP string) error {
	list, err := nodes(c, base)
	if err != nil {
		return err
	}
	for _, n := range list.Items {
		ip := ""
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				ip = a.Address
			}
		}
		if n.Spec.PodCIDR == "" || ip == "" {
			continue
		}
		if ip == hostIP {
			if err := writeIfChanged("/etc/cni/net.d/10-podnet.conflist", cniConfig(n.Spec.PodCIDR)); err != nil {
				return err
			}
			continue
		}
		out, err := exec.Command("ip", "route", "replace", n.Spec.PodCIDR, "via", ip).CombinedOutput()
		if err != nil {
			return fmt.Errorf("route %s via %s: %v: %s", n.Spec.PodCIDR, ip, err, out)
		}
	}
	return nil
}

func main() {
	hostIP := os.Getenv("HOST_IP")
	c, base, err := client()
	if err != nil {
		log.Fatal(err)
	}
	for {
		if err := sync(c, base, hostIP); err != nil {
			log.Print(err)
		}
		time.Sleep(5 * time.Second)
	}
}
