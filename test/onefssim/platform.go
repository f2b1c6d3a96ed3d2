package onefssim

import (
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"strings"
	"syscall"
	"time"
)

func (s *Server) guid() string {
	h := sha1.Sum([]byte("onefssim:" + s.opts.ClusterName + ":" + s.rootDir))
	return "000e1ea5" + hex.EncodeToString(h[:])[:28]
}

func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request, res []string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	if len(res) != 1 {
		notFoundPath(w, r)
		return
	}
	guid := s.guid()
	rel := s.opts.Release
	ver := strings.TrimPrefix(rel, "v")
	build := "B_" + strings.ReplaceAll(ver, ".", "_") + "_000(RELEASE)"
	switch res[0] {
	case "config":
		writeJSON(w, 200, map[string]any{
			"description":   "",
			"devices":       []map[string]any{{"devid": 1, "guid": guid, "is_up": true, "lnn": 1}},
			"encoding":      "utf-8",
			"guid":          guid,
			"has_quorum":    true,
			"is_compliance": false,
			"is_virtual":    true,
			"is_vonefs":     false,
			"join_mode":     "Manual",
			"local_devid":   1,
			"local_lnn":     1,
			"local_serial":  "SIM000-000000-0001",
			"name":          s.opts.ClusterName,
			"onefs_version": map[string]any{
				"build":     build,
				"copyright": "onefssim: a OneFS API simulator (not Dell software)",
				"reldate":   0,
				"release":   rel,
				"revision":  "0",
				"type":      "Isilon OneFS",
				"version":   "Isilon OneFS " + rel + " " + build,
			},
			"timezone":     map[string]any{"abbreviation": "UTC", "custom": "", "name": "UTC", "path": "UTC"},
			"upgrade_type": nil,
		})
	case "identity":
		writeJSON(w, 200, map[string]any{
			"description":     "",
			"logon":           map[string]any{"motd": "", "motd_header": ""},
			"mttdl_level_msg": "",
			"name":            s.opts.ClusterName,
		})
	default:
		notFoundPath(w, r)
	}
}

func zoneJSON(name, p string, id int) map[string]any {
	return map[string]any{
		"alternate_system_provider":   "lsa-file-provider:MinimumRequired",
		"auth_providers":              []string{"lsa-local-provider:" + name},
		"cache_entry_expiry":          14400,
		"groupnet":                    "groupnet0",
		"home_directory_umask":        63,
		"id":                          name,
		"ifs_restricted":              []any{},
		"map_untrusted":               "",
		"name":                        name,
		"negative_cache_entry_expiry": 60,
		"netbios_name":                "",
		"path":                        p,
		"skeleton_directory":          "/usr/share/skel",
		"system":                      name == "System",
		"system_provider":             "lsa-file-provider:System",
		"user_mapping_rules":          []any{},
		"zone_id":                     id,
	}
}

func (s *Server) zoneList() []map[string]any {
	out := []map[string]any{zoneJSON("System", "/ifs", 1)}
	id := 2
	for _, n := range sortedKeys(s.opts.Zones) {
		if n != "System" {
			out = append(out, zoneJSON(n, s.opts.Zones[n], id))
			id++
		}
	}
	return out
}

func (s *Server) handleZones(w http.ResponseWriter, r *http.Request, res []string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	zl := s.zoneList()
	switch len(res) {
	case 0:
		writeJSON(w, 200, map[string]any{"zones": zl, "total": len(zl)})
	case 1:
		for _, z := range zl {
			if z["name"] == res[0] || z["id"] == res[0] {
				writeJSON(w, 200, map[string]any{"zones": []any{z}})
				return
			}
		}
		writeError(w, 404, "AEC_NOT_FOUND", "", "Zone not found: "+res[0])
	default:
		notFoundPath(w, r)
	}
}

func (s *Server) handleQuotaLicense(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	writeJSON(w, 200, map[string]any{
		"days_to_expiry": nil,
		"expiration":     nil,
		"expired_alert":  false,
		"expiring_alert": false,
		"id":             "SMARTQUOTAS",
		"name":           "SMARTQUOTAS",
		"status":         "Licensed",
		"tiers":          []map[string]any{{"licensed_node_count": 1, "tier": "NONINF", "used_node_count": 1}},
	})
}

// handleStatistics serves /platform/N/statistics/current (ifs.bytes.* and
// ifs.percent.* keys, computed with statfs on Root) and
// /platform/N/statistics/summary/client (always empty).
func (s *Server) handleStatistics(w http.ResponseWriter, r *http.Request, res []string) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, r)
		return
	}
	if len(res) == 2 && res[0] == "summary" && res[1] == "client" {
		writeJSON(w, 200, map[string]any{"client": []any{}})
		return
	}
	if len(res) != 1 || res[0] != "current" {
		notFoundPath(w, r)
		return
	}
	var keys []string
	for _, p := range []string{"keys", "key"} {
		for _, v := range r.URL.Query()[p] {
			for _, k := range strings.Split(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					keys = append(keys, k)
				}
			}
		}
	}
	if len(keys) == 0 {
		writeError(w, 400, "AEC_BAD_REQUEST", "keys", "At least one key is required")
		return
	}
	var sf syscall.Statfs_t
	if err := syscall.Statfs(s.rootDir, &sf); err != nil {
		writeError(w, 500, "AEC_EXCEPTION", "", err.Error())
		return
	}
	bs := int64(sf.Bsize)
	total, free, avail := int64(sf.Blocks)*bs, int64(sf.Bfree)*bs, int64(sf.Bavail)*bs
	used := total - free
	pct := func(x int64) float64 {
		if total == 0 {
			return 0
		}
		return float64(x) * 100 / float64(total)
	}
	now := time.Now().Unix()
	stats := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		var v any
		switch k {
		case "ifs.bytes.total":
			v = total
		case "ifs.bytes.free":
			v = free
		case "ifs.bytes.avail":
			v = avail
		case "ifs.bytes.used":
			v = used
		case "ifs.percent.free":
			v = pct(free)
		case "ifs.percent.avail":
			v = pct(avail)
		case "ifs.percent.used":
			v = pct(used)
		case "ifs.files.total":
			v = int64(sf.Files)
		case "ifs.files.free", "ifs.files.avail":
			v = int64(sf.Ffree)
		}
		e := map[string]any{"devid": 0, "error": nil, "error_code": nil, "key": k, "time": now, "value": v}
		if v == nil {
			e["error"] = "Key not found: " + k
			e["error_code"] = 2
		}
		stats = append(stats, e)
	}
	writeJSON(w, 200, map[string]any{"stats": stats})
}
