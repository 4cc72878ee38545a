package relay

import (
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// DemoConfig is the embedded configuration run when no -config is given.
//
//go:embed demo.toml
var DemoConfig []byte

// DemoConfigName names the embedded configuration in messages.
const DemoConfigName = "(embedded demo config)"

// DemoToken is the publisher token of the embedded demo configuration.
const DemoToken = "hookrelay-demo-token"

// DemoReceiverPath is where the demo receiver is mounted.
const DemoReceiverPath = "/demo/receiver"

// demoTolerance is how far a signature timestamp may be from now.
const demoTolerance = 5 * time.Minute

// DemoReceiver returns a webhook receiver that verifies the Standard
// Webhooks signature of each delivery with keys and logs the event. It
// answers 204 for a verified delivery and 401 otherwise. It exists only
// for the embedded demo configuration.
func DemoReceiver(keys [][]byte, log *slog.Logger, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "POST only")
			return
		}
		body, status, err := readBody(w, r, 1<<20)
		if err != nil {
			writeError(w, status, err.Error())
			return
		}
		if err := VerifyStandard(keys, r.Header, body, now(), demoTolerance); err != nil {
			log.Warn("demo receiver refused a delivery", "webhook_id", r.Header.Get(HeaderWebhookID), logKeyErr, err)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		var ev struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		json.Unmarshal(body, &ev)
		data := string(ev.Data)
		if len(data) > 200 {
			data = data[:200] + "..."
		}
		log.Info("demo receiver got a verified delivery",
			"webhook_id", r.Header.Get(HeaderWebhookID), "type", ev.Type, "data", data)
		w.WriteHeader(http.StatusNoContent)
	})
}
