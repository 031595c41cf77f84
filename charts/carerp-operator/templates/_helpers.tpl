{{- define "carerp-operator.labels" -}}
app.kubernetes.io/name: carerp-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carerp
{{- end -}}
{{- define "carerp-operator.selector" -}}
app.kubernetes.io/name: carerp-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
