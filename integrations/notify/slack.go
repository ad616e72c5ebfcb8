package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/rollguard/rollguard/ports"
)

// slack posts to a Slack incoming webhook: a text fallback (notifications,
// screen readers) and Block Kit blocks with event, rollout, wave, hosts and
// reason.
type slack struct {
	url  *url.URL
	post *poster
}

// Block Kit, the parts used here.
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type  string `json:"type"` // plain_text | mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// Block Kit limits: a header's text, a field's, a section's.
const (
	slackHeaderMax  = 150
	slackFieldMax   = 2000
	slackSectionMax = 3000
)

func (s *slack) send(ctx context.Context, a ports.Alert) error {
	data, err := json.Marshal(slackPayload(a))
	if err != nil {
		return fmt.Errorf("encode slack message: %w", err)
	}
	return s.post.post(ctx, s.url, data, nil)
}

func slackPayload(a ports.Alert) slackMessage {
	icon := map[string]string{
		ports.EventDegraded:     ":warning:",
		ports.EventRollback:     ":rotating_light:",
		ports.EventHalted:       ":octagonal_sign:",
		ports.EventPromoted:     ":white_check_mark:",
		ports.EventVerifyFailed: ":x:",
	}[a.Event]
	if a.Resolved {
		icon = ":white_check_mark:"
	}
	wave := a.Wave
	if wave == "" {
		wave = "–"
	}
	hosts := "–"
	if len(a.Hosts) > 0 {
		hosts = hostList(a.Hosts, 20)
	}
	fields := []slackText{
		mrkdwn("*Event*\n" + slackEscape(a.Event)),
		mrkdwn("*Rollout*\n" + slackEscape(a.Rollout)),
		mrkdwn("*Wave*\n" + slackEscape(wave)),
		mrkdwn(truncate("*Hosts*\n"+slackEscape(hosts), slackFieldMax)),
	}
	blocks := []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(icon+" "+title(a)+": "+a.Rollout, slackHeaderMax), Emoji: true}},
		{Type: "section", Fields: fields},
	}
	if a.Reason != "" {
		t := mrkdwn(truncate("*Reason*\n"+slackEscape(a.Reason), slackSectionMax))
		blocks = append(blocks, slackBlock{Type: "section", Text: &t})
	}
	if len(a.Attribution) > 0 {
		t := mrkdwn(truncate("*What changed, what degraded*\n"+slackEscape(strings.Join(a.Attribution, "\n")), slackSectionMax))
		blocks = append(blocks, slackBlock{Type: "section", Text: &t})
	}
	if len(a.Values) > 0 {
		t := mrkdwn(truncate("*Values*\n```"+slackEscape(valueList(a.Values))+"```", slackSectionMax))
		blocks = append(blocks, slackBlock{Type: "section", Text: &t})
	}
	var ctxParts []string
	if a.RunID != "" {
		ctxParts = append(ctxParts, "run `"+slackEscape(a.RunID)+"`")
	}
	ctxParts = append(ctxParts, a.At.UTC().Format("2006-01-02 15:04:05Z"))
	if u, err := url.Parse(a.ReportURL); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		ctxParts = append(ctxParts, "<"+slackEscape(a.ReportURL)+"|report>")
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{mrkdwn(strings.Join(ctxParts, " · "))}})
	text := summary(a)
	if a.Reason != "" {
		text += ": " + a.Reason
	}
	return slackMessage{Text: slackEscape(text), Blocks: blocks}
}

func mrkdwn(s string) slackText { return slackText{Type: "mrkdwn", Text: s} }

// slackEscape escapes the three characters Slack's mrkdwn reserves for
// links and mentions, so a reason cannot ping @channel or forge a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
