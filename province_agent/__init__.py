"""The province agent: validates, builds and sends deliveries; never imports exchange_server."""
