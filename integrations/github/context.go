package github

import "strings"

// InActions says whether the process runs in a GitHub Actions job.
func InActions(getenv func(string) string) bool {
	return getenv("GITHUB_ACTIONS") == "true"
}

// RunURL is the workflow run's page, from GITHUB_SERVER_URL (default
// https://github.com), GITHUB_REPOSITORY and GITHUB_RUN_ID; "" when the
// repository or run id is unknown.
func RunURL(getenv func(string) string) string {
	repo, id := getenv("GITHUB_REPOSITORY"), getenv("GITHUB_RUN_ID")
	if repo == "" || id == "" {
		return ""
	}
	return serverURL(getenv) + "/" + repo + "/actions/runs/" + id
}

// CommitURL is the page of the commit being built (GITHUB_SHA); "" when
// unknown.
func CommitURL(getenv func(string) string) string {
	repo, sha := getenv("GITHUB_REPOSITORY"), getenv("GITHUB_SHA")
	if repo == "" || sha == "" {
		return ""
	}
	return serverURL(getenv) + "/" + repo + "/commit/" + sha
}

func serverURL(getenv func(string) string) string {
	if s := strings.TrimSuffix(getenv("GITHUB_SERVER_URL"), "/"); s != "" {
		return s
	}
	return "https://github.com"
}

// RunContext describes the workflow run for a report's context (where
// the run ran): ci, repository, sha, ref, workflow, job, run_id,
// run_attempt, actor, event, run_url, commit_url. Keys whose variable is
// unset are left out; nil outside GitHub Actions.
func RunContext(getenv func(string) string) map[string]string {
	if !InActions(getenv) {
		return nil
	}
	ctx := map[string]string{"ci": "github-actions"}
	for key, env := range map[string]string{
		"repository":  "GITHUB_REPOSITORY",
		"sha":         "GITHUB_SHA",
		"ref":         "GITHUB_REF",
		"workflow":    "GITHUB_WORKFLOW",
		"job":         "GITHUB_JOB",
		"run_id":      "GITHUB_RUN_ID",
		"run_attempt": "GITHUB_RUN_ATTEMPT",
		"actor":       "GITHUB_ACTOR",
		"event":       "GITHUB_EVENT_NAME",
	} {
		if v := getenv(env); v != "" {
			ctx[key] = v
		}
	}
	if u := RunURL(getenv); u != "" {
		ctx["run_url"] = u
	}
	if u := CommitURL(getenv); u != "" {
		ctx["commit_url"] = u
	}
	return ctx
}
