// Conveyor dashboard: times in the browser's zone with their age, a confirmation before destructive actions, and a
// refresh of <main> every few seconds (fetched and swapped, no full reload). Hand-written, no dependencies.
(() => {
  'use strict';

  const units = [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]];

  function relative(ms) {
    const seconds = Math.abs(ms) / 1000;
    for (const [name, size] of units) {
      if (seconds >= size || size === 1) {
        const n = Math.floor(seconds / size);
        return ms < 0 ? `in ${n} ${name}` : `${n} ${name} ago`;
      }
    }
    return '';
  }

  function localize(root) {
    for (const element of root.querySelectorAll('time[datetime]')) {
      const at = new Date(element.getAttribute('datetime'));
      if (Number.isNaN(at.getTime())) {
        continue;
      }
      if (!element.title) {
        element.title = element.textContent; // the UTC text the server wrote
      }
      element.textContent = `${at.toLocaleString()} (${relative(Date.now() - at.getTime())})`;
    }
  }

  // Destructive forms carry data-confirm; without script they still post (the server checks the CSRF token either way).
  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  async function refresh() {
    const active = document.activeElement;
    if (document.hidden || (active instanceof HTMLInputElement && active.value !== '')) {
      return; // leave a field someone is typing in alone
    }
    try {
      const response = await fetch(location.href, { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok || response.redirected) {
        return; // signed out or failing: keep what is shown
      }
      const fresh = new DOMParser().parseFromString(await response.text(), 'text/html').getElementById('main');
      const main = document.getElementById('main');
      if (fresh && main) {
        main.replaceWith(document.adoptNode(fresh));
        localize(fresh);
      }
    } catch {
      // the next tick tries again
    }
  }

  // A notice belongs to the action that caused it: drop it from the address so a refresh does not show it again.
  const url = new URL(location.href);
  if (url.searchParams.has('notice')) {
    url.searchParams.delete('notice');
    history.replaceState(null, '', url);
  }
  localize(document);
  setInterval(() => localize(document), 1000);
  const seconds = Number(document.body.dataset.refresh);
  if (seconds > 0) {
    setInterval(refresh, seconds * 1000);
  }
})();
