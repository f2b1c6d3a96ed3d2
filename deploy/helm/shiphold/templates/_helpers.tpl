{{/* Object name prefix: the release name, or fullnameOverride. */}}
{{- define "shiphold.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "shiphold.labels" -}}
app.kubernetes.io/part-of: shiphold
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* image: (dict "image" .Values.images.X) */}}
{{- define "shiphold.image" -}}
{{- printf "%s:%s" .image.repository .image.tag -}}
{{- end -}}

{{- define "shiphold.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletDir) .Values.driverName -}}
{{- end -}}
