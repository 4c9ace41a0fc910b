package bridge

import (
	"github.com/dmbridge/dmbridge/metrics"
	"github.com/dmbridge/dmbridge/portal"
)

// observedHandler is the portal manager as the connector server's Handler,
// with connections counted on the way; the portals need not know about it.
type observedHandler struct {
	*portal.Manager
	metrics *metrics.Metrics
}

func (h observedHandler) Connected(connectorID string) {
	h.metrics.ConnectorConnected(connectorID)
	h.Manager.Connected(connectorID)
}
