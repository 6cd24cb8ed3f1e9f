"""JupyterHub on the cluster: z2jh values (render, validate, write) and helm/kubectl commands.

- `values`:   Settings -> z2jh values (Jinja2 template `templates/z2jh-values.yaml.j2`),
              YAML output, redaction, the 0600 values file.
- `validate`: chart defaults + schema (copied into `chart/`), policy rules, and errors
              that name the vars.yml key.
- `helm`:     pure argv builders for helm and kubectl (deploy, status, rollback, hub-db backup).
"""
