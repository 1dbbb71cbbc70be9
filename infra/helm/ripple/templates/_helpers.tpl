{{/*
"true" when the manifest at files/<section>/<folder>/... is switched on:
knative/* folders by .Values.functions, infra/* folders by .Values.infra; unlisted folders are on.
*/}}
{{- define "ripple.enabled" -}}
{{- $root := index . 0 -}}
{{- $section := index . 1 -}}
{{- $folder := index . 2 -}}
{{- $switches := ternary $root.Values.functions $root.Values.infra (eq $section "knative") | default dict -}}
{{- if or (not (hasKey $switches $folder)) (index $switches $folder) -}}true{{- end -}}
{{- end -}}

{{/*
A manifest of the repository, adapted to this release: its namespace and in-cluster addresses
follow the release namespace, its images the configured registry prefix.
*/}}
{{- define "ripple.localize" -}}
{{- $root := index . 0 -}}
{{- $document := index . 1 -}}
{{- $namespace := $root.Release.Namespace -}}
{{- $document
    | replace "image-registry.openshift-image-registry.svc:5000/ripple" $root.Values.image.prefix
    | replace "namespace: ripple\n" (printf "namespace: %s\n" $namespace)
    | replace ".ripple.svc" (printf ".%s.svc" $namespace) -}}
{{- end -}}
