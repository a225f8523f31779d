module memkube.local/kindtools

go 1.26.0
