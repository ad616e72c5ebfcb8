package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// webhook POSTs the alert as JSON: ports.Alert's fields plus a summary
// sentence. Values that are not finite (no data) are null.
type webhook struct {
	url  *url.URL
	post *poster
}

// webhookBody is the JSON a webhook receives.
type webhookBody struct {
	ports.Alert
	// Values shadows Alert.Values: JSON has no NaN.
	Values map[string]*float64 `json:"values,omitempty"`
	// Summary is the alert as one sentence.
	Summary string `json:"summary"`
}

func (w *webhook) send(ctx context.Context, a ports.Alert) error {
	body := webhookBody{Alert: a, Values: finiteValues(a.Values), Summary: summary(a)}
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode webhook body: %w", err)
	}
	h := http.Header{}
	h.Set("X-Rollguard-Event", a.Event)
	// The same delivery id on the retry lets a receiver drop a duplicate.
	h.Set("X-Rollguard-Delivery", deliveryID(a))
	return w.post.post(ctx, w.url, data, h)
}

func finiteValues(values map[string]float64) map[string]*float64 {
	if len(values) == 0 {
		return nil
	}
	out := make(map[string]*float64, len(values))
	for k, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[k] = nil
			continue
		}
		out[k] = &v
	}
	return out
}

// deliveryID identifies one alert: run, event, wave, time, resolution.
func deliveryID(a ports.Alert) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%t", a.RunID, a.Event, a.Wave, a.At.UTC().Format(time.RFC3339Nano), a.Resolved))
	return hex.EncodeToString(sum[:16])
}
