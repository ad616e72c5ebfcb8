# rollguard as a Nomad periodic batch job.
#
# The HCL equivalent of what `rollguard nomad job` renders
# (integrations/nomad.RenderJob) for a spec like
#   metrics: {url: "${VM_URL}", bearer_token: "${METRICS_TOKEN}"}
#   apply:   {playbook: playbooks/site.yml, vault_password_file: .vault-pass}
#   state:   {store: consul}
#   alerts:  [{type: slack, url: "${SLACK_WEBHOOK_URL}"}]
# Every weekday at 03:00 Paris time it runs
#   rollguard run -f local/rollout.yaml --report-dir alloc/data/reports --lock-wait 3m
# with the spec and playbooks unpacked from an artifact. Render your own with
# `rollguard nomad job -f rollout.yaml --cron '0 3 * * 1-5'`: it embeds the
# files the spec needs (never hidden files, .git, .rollguard/, keys or vault
# password files) and lists the items the variable must hold.
#
# Before registering:
#   1. Keep the state in Consul or Nomad (state.store: consul | nomad in
#      rollout.yaml). A rescheduled allocation starts on another node; with a
#      local store it would have lost the journal and could neither resume
#      nor revert. `rollguard nomad job` refuses that combination.
#   2. Put every ${VAR} of the spec, the API tokens and the secret files in
#      the job's variable, readable by this job's tasks without any ACL
#      policy (periodic launches read their parent's):
#        nomad var put nomad/jobs/web-nginx-rollout \
#          CONSUL_HTTP_TOKEN=... VM_URL=... METRICS_TOKEN=... SLACK_WEBHOOK_URL=... \
#          file_vault_pass=@.vault-pass
#      Secrets never go into the job itself. `rollguard nomad register`
#      checks the variable holds every item before it registers.
#   3. Raise the clients' max_kill_timeout: each Nomad client caps a task's
#      kill_timeout at its own max_kill_timeout, 30s unless its agent
#      configuration says otherwise, and no API reports it. Without
#        client { max_kill_timeout = "5m" }
#      on the clients that may run this job, a stopped job gets 30s to
#      revert what it changed, not the 5m it asks for.
#   4. nomad job run ci/nomad/rollguard.nomad.hcl
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
    # crons needs Nomad 1.6.2+; before, write `cron = "0 3 * * 1-5"`
    # (`rollguard nomad register` does so by itself on such a cluster).
    crons     = ["0 3 * * 1-5"]
    time_zone = "Europe/Paris"
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

    # When the playbooks need collections (a requirements.yml next to the
    # playbook listing them), this prestart task installs them into the
    # allocation, where the run's Ansible finds them (ANSIBLE_COLLECTIONS_PATH
    # below). The clients need to reach Ansible Galaxy, or the requirements'
    # own sources.
    task "collections" {
      driver = "docker"
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      config {
        image      = "ghcr.io/rollguard/rollguard:1.2.0"
        entrypoint = ["ansible-galaxy"]
        args = ["collection", "install", "-r", "${NOMAD_TASK_DIR}/requirements.yml",
        "-p", "${NOMAD_ALLOC_DIR}/ansible/collections"]
      }
      artifact {
        source      = "https://artifacts.example.com/web-nginx-rollout/requirements.yml"
        destination = "local/"
      }
      resources {
        cpu    = 200
        memory = 256
      }
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
      # Or embed the files (rollguard nomad job does): one template per
      # file, with delimiters that leave {{ }} in specs and playbooks alone:
      #   template {
      #     data            = file("rollout.yaml")
      #     destination     = "local/rollout.yaml"
      #     change_mode     = "noop"
      #     left_delimiter  = "[[rollguard-nomad-template:"
      #     right_delimiter = ":rollguard-nomad-template]]"
      #   }

      # Every ${VAR} of the spec and the tokens, from the job's variable,
      # as environment. Values are JSON-quoted, which Nomad's env parser
      # reads back exactly. A missing item fails the task instead of
      # running without it; an optional one (${VAR:-default} in the spec)
      # is written `{{ with (index . "VAR").Value }}VAR={{ . | toJSON }}{{ end }}`.
      template {
        data                 = <<-EOT
        {{ with nomadVar "nomad/jobs/web-nginx-rollout" }}
        CONSUL_HTTP_TOKEN={{ .CONSUL_HTTP_TOKEN | toJSON }}
        VM_URL={{ .VM_URL | toJSON }}
        METRICS_TOKEN={{ .METRICS_TOKEN | toJSON }}
        SLACK_WEBHOOK_URL={{ .SLACK_WEBHOOK_URL | toJSON }}
        {{ end }}
        EOT
        destination          = "secrets/rollguard.env"
        env                  = true
        change_mode          = "noop"
        error_on_missing_key = true
      }

      # A secret file the spec names (apply.vault_password_file, an SSH key
      # in ansible.cfg or the inventory), from the variable, where the spec
      # expects it, readable by the task alone.
      template {
        data                 = "{{ with nomadVar \"nomad/jobs/web-nginx-rollout\" }}{{ .file_vault_pass }}{{ end }}"
        destination          = "local/.vault-pass"
        perms                = "0600"
        change_mode          = "noop"
        error_on_missing_key = true
      }

      # Workload identity (Nomad 1.7+ on every client), instead of a
      # NOMAD_TOKEN in the variable, when the run calls Nomad (state.store:
      # nomad, targets.nomad): the task's identity is its NOMAD_TOKEN, the
      # task API its NOMAD_ADDR, and an ACL policy attached to the job
      # (nomad acl policy apply -job web-nginx-rollout ...) grants it write
      # on the variables under rollguard/<name>/ and node read.
      #   identity {
      #     env = true
      #   }
      #   env { NOMAD_ADDR = "unix://${NOMAD_SECRETS_DIR}/api.sock" }

      env {
        # Nomad exports no node-name variable; lock holders and reports use it.
        ROLLGUARD_NOMAD_NODE_NAME = "${node.unique.name}"
        # A docker task in bridge networking reaches no agent on 127.0.0.1.
        CONSUL_HTTP_ADDR = "http://consul.service.consul:8500"
        # The collections the prestart task installed, then Ansible's own.
        ANSIBLE_COLLECTIONS_PATH = "${NOMAD_ALLOC_DIR}/ansible/collections:~/.ansible/collections:/usr/share/ansible/collections"
      }

      # Long enough to revert the hosts changed so far after SIGTERM, but
      # capped by each client's max_kill_timeout (30s by default): see 3.
      # above.
      kill_timeout = "5m"
      kill_signal  = "SIGTERM"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
