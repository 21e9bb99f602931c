// Assay pages (evals, rubrics, datasets, traffic, models): behaviours beyond app.js.
"use strict";

// Filter forms (GET) leave blank fields out of the address, so a shared link shows only the
// filter that is really applied: /traffic?task=support, not a list of empty parameters.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.matches("form.filters")) return;
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (typeof value === "string" && value.trim() !== "") params.append(name, value.trim());
  }
  event.preventDefault();
  const query = params.toString();
  window.location.assign(form.action.split("?")[0] + (query ? `?${query}` : ""));
});
