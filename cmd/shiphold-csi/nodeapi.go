package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"
)

// nodeOfAPI is the part of a Node object (and of the API's Status answer) the plugin reads.
type nodeOfAPI struct {
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Message string `json:"message"`
}

// getNodeLabels reads a Node's labels with one GET through the REST config's transport
// (service account token, cluster CA): the typed clientset would link every API group's
// types and clients into the plugin, most of its binary, for this one call.
func getNodeLabels(ctx context.Context, rc *rest.Config, nodeName string) (map[string]string, error) {
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(rc.Host, "/") + "/api/v1/nodes/" + url.PathEscape(nodeName)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var node nodeOfAPI
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err == nil {
		err = json.Unmarshal(body, &node)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, strings.TrimSpace(resp.Status+" "+node.Message))
	}
	if err != nil {
		return nil, fmt.Errorf("GET %s: the answer is not a Node: %v", u, err)
	}
	return node.Metadata.Labels, nil
}
