// Build-time rendering of the machine's page (used by vite.config.js): the VITE_* values of the
// machine's .env and its images/ are written into index.html, so the page a machine serves shows
// that machine's values without running any script. Pure functions, no I/O.

export const IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "gif", "svg", "webp", "avif"];

const FALLBACK_TITLE = "aiolabs.nixos example web app";

export function escapeHtml(value) {
  return String(value).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

/** The VITE_* entries of an environment, sorted by name. */
export function machineSettings(env) {
  return Object.entries(env)
    .filter(([key]) => key.startsWith("VITE_"))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** File names that are pictures, sorted; anything else in images/ is ignored. */
export function imageFiles(names) {
  return names
    .filter((name) => !name.startsWith(".") && IMAGE_EXTENSIONS.includes(name.split(".").pop().toLowerCase()))
    .sort();
}

/** index.html with its machine:* placeholders filled from env and the image file names. */
export function renderMachinePage(html, env, images) {
  const siteName = env.VITE_SITE_NAME || FALLBACK_TITLE;
  const rows = machineSettings(env)
    .map(([key, value]) => `<tr><th scope="row">${escapeHtml(key)}</th><td>${escapeHtml(value)}</td></tr>`)
    .join("\n        ");
  const parts = {
    title: `<title>${escapeHtml(siteName)}</title>`,
    heading:
      `<h1 id="site-name">${escapeHtml(siteName)}</h1>` +
      (env.VITE_DOMAIN ? `\n      <p id="domain">Served by ${escapeHtml(env.VITE_DOMAIN)}</p>` : ""),
    images: images.length
      ? `<section id="images">\n        ${images
          .map((name) => `<img src="/images/${encodeURIComponent(name)}" alt="${escapeHtml(name)}" />`)
          .join("\n        ")}\n      </section>`
      : "",
    settings: rows
      ? `<table id="settings">\n        ${rows}\n      </table>`
      : `<p id="settings">This machine's .env sets no VITE_* values.</p>`,
  };
  return html.replace(/<!-- machine:(\w+) -->/g, (match, name) => parts[name] ?? match);
}
