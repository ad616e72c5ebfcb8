# rollguard as a Nomad periodic batch job.
#
# The HCL equivalent of what `rollguard nomad job` renders
# (integrations/nomad.RenderJob): every weekday at 03:00 Paris time it runs
#   rollguard run -f local/rollout.yaml --report-dir alloc/data/reports --lock-wait 3m
# with the spec and playbooks unpacked from an artifact.
#
# Before registering:
#   1. Keep the state in Consul or Nomad (state.store: consul | nomad in
#      rollout.yaml). A rescheduled allocation starts on another node; with a
#      local store it would have lost the journal and could neither resume
#      nor revert. `rollguard nomad job` refuses that combination.
#   2. Put the secrets in the job's variable, readable by this job's tasks
#      without any ACL policy (periodic launches read their parent's):
#        nomad var put nomad/jobs/web-nginx-rollout \
#          CONSUL_HTTP_TOKEN=... NOMAD_TOKEN=... METRICS_BEARER_TOKEN=...
#      The NOMAD_TOKEN is only needed with state.store: nomad (it writes
#      Variables under rollguard/<name>/); give it a policy with write on
#      that path. Secrets never go into the job itself.
#   3. nomad job run ci/nomad/rollguard.nomad.hcl
#
# On SIGTERM (job stopped, node drained) rollguard reverts what it changed,
# per revert.on_interrupt; kill_timeout gives it the time to do so.

job "web-nginx-rollout" {
  type        = "batch"
  datacenters = ["*"]

  meta {
    rollguard_version = "1.2.0"
  }

  periodic {
    cron             = "0 3 * * 1-5"
    time_zone        = "Europe/Paris"
    # Two runs of one rollout at once would only fight for the lock.
    prohibit_overlap = true
  }

  group "rollguard" {
    count = 1

    # A restart in the same allocation resumes the run from its journal.
    # Bounded, so a broken spec does not loop all day.
    restart {
      attempts = 2
      interval = "1h"
      delay    = "30s"
      mode     = "fail"
    }

    # One move to another node (lost node, failed allocation); the run
    # resumes from the journal in Consul KV / Nomad Variables.
    reschedule {
      attempts       = 1
      interval       = "24h"
      delay          = "1m"
      delay_function = "constant"
      unlimited      = false
    }

    task "rollguard" {
      driver = "docker"

      config {
        image = "ghcr.io/rollguard/rollguard:1.2.0"
        args = [
          "run",
          "-f", "${NOMAD_TASK_DIR}/rollout.yaml",
          "--report-dir", "${NOMAD_ALLOC_DIR}/data/reports",
          # A rescheduled allocation waits for the dead one's lease to lapse,
          # then resumes its journal.
          "--lock-wait", "3m",
        ]
      }
      # With raw_exec or exec instead:
      #   driver = "raw_exec"
      #   config {
      #     command = "/usr/local/bin/rollguard"
      #     args    = [ ...as above... ]
      #   }

      # rollout.yaml and playbooks/ land in local/.
      artifact {
        source      = "https://artifacts.example.com/web-nginx-rollout.tar.gz"
        destination = "local/"
      }
      # Or embed the files (rollguard nomad job --file ...): one template per
      # file, with delimiters that leave {{ }} in specs and playbooks alone:
      #   template {
      #     data            = file("rollout.yaml")
      #     destination     = "local/rollout.yaml"
      #     change_mode     = "noop"
      #     left_delimiter  = "[[rollguard-nomad-template:"
      #     right_delimiter = ":rollguard-nomad-template]]"
      #   }

      # Secrets from the job's variable, as environment; a missing item fails
      # the task instead of running without credentials.
      template {
        data                 = <<-EOT
        {{ with nomadVar "nomad/jobs/web-nginx-rollout" }}
        CONSUL_HTTP_TOKEN={{ .CONSUL_HTTP_TOKEN }}
        NOMAD_TOKEN={{ .NOMAD_TOKEN }}
        METRICS_BEARER_TOKEN={{ .METRICS_BEARER_TOKEN }}
        {{ end }}
        EOT
        destination          = "secrets/rollguard.env"
        env                  = true
        change_mode          = "noop"
        error_on_missing_key = true
      }

      env {
        # Nomad exports no node-name variable; lock holders and reports use it.
        ROLLGUARD_NOMAD_NODE_NAME = "${node.unique.name}"
      }

      # Long enough to revert the hosts changed so far after SIGTERM.
      kill_timeout = "5m"
      kill_signal  = "SIGTERM"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
