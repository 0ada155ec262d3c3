"""What operators run it by: the alert rules (made into the Prometheus Operator's object) and
the Grafana dashboards, as code. Reads the plain rules file under k8s/monitoring/, which stays
the single source (promtool tests it as it is). Imports no stage."""
