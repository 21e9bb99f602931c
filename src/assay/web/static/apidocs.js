// The OpenAPI docs page: Swagger UI, vendored, reading our own spec. "Try it out" sends the
// page's CSRF token, so uploads and body-less POSTs work from here as from the pages.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  window.SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (request) => {
      request.headers["X-CSRF-Token"] = token;
      return request;
    },
  });
});
