{{/* Names and labels shared by the templates. */}}

{{- define "strata.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strata.labels" -}}
{{ include "strata.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: broker
{{- end -}}

{{/* strata.group: the object name of one broker group; fails on a name Kubernetes cannot use. */}}
{{- define "strata.group" -}}
{{- $g := .group -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString $g.name)) -}}
{{- fail (printf "groups: broker group name %q must be lower-case letters, digits and '-' (it names Kubernetes objects)" (toString $g.name)) -}}
{{- end -}}
{{- printf "%s-%s" (include "strata.fullname" .root) $g.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* strata.s3Secret: the Secret holding S3 credentials, empty when brokers use the AWS chain. */}}
{{- define "strata.s3Secret" -}}
{{- if .Values.s3.existingSecret -}}
{{- .Values.s3.existingSecret -}}
{{- else if .Values.s3.accessKey -}}
{{- printf "%s-s3" (include "strata.fullname" .) -}}
{{- end -}}
{{- end -}}
