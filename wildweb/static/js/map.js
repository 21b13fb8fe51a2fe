// Maps drawn with the vendored Leaflet. Sightings are circle markers (SVG), so they show even
// when the background tiles cannot load (offline, in the field); a note on the page says so.
//
// <div data-map="sightings" data-markers="ID of a json_script"> : the sightings, fitted in view.
// <div data-map="pin" data-lat="ID" data-lon="ID"> : click or tap to set a place into two inputs;
//   typing into the inputs moves the pin.
(function () {
  if (!window.L) return;

  function baseMap(element, options) {
    const map = L.map(element, Object.assign({ worldCopyJump: true }, options || {}));
    const tiles = L.tileLayer(element.dataset.tileUrl || "https://tile.openstreetmap.org/{z}/{x}/{y}.png", {
      maxZoom: 18,
      attribution: element.dataset.tileAttribution || "&copy; OpenStreetMap contributors",
    });
    let failed = false;
    tiles.on("tileerror", function () {
      if (failed) return;
      failed = true;
      element.classList.add("map-offline");
      element.dataset.tiles = "unavailable";
    });
    tiles.addTo(map);
    return map;
  }

  function sightingsMap(element) {
    const source = document.getElementById(element.dataset.markers);
    const markers = source ? JSON.parse(source.textContent) : [];
    const map = baseMap(element);
    const points = [];
    markers.forEach(function (m) {
      const point = [m.lat, m.lon];
      points.push(point);
      const label = (m.label ? m.label + ", " : "") + (m.date || "date unknown") +
        (m.coarsened ? " (approximate place)" : "");
      L.circleMarker(point, {
        radius: m.coarsened ? 12 : 8, color: "#2f6b3a", weight: 2,
        fillColor: m.coarsened ? "#f0b400" : "#2f6b3a", fillOpacity: 0.6,
        className: "sighting-marker",
      }).bindTooltip(label).addTo(map);
    });
    if (points.length === 1) map.setView(points[0], 9);
    else if (points.length) map.fitBounds(points, { padding: [24, 24], maxZoom: 11 });
    else map.setView([20, 0], 2);
    element.dataset.markerCount = String(points.length);
  }

  function pinMap(element) {
    const lat = document.getElementById(element.dataset.lat);
    const lon = document.getElementById(element.dataset.lon);
    if (!lat || !lon) return;
    const map = baseMap(element);
    let pin = null;

    function place(latitude, longitude, pan) {
      const point = [latitude, longitude];
      if (!pin) {
        pin = L.circleMarker(point, { radius: 9, color: "#a02020", weight: 3, fillOpacity: 0.5,
          className: "location-pin" }).addTo(map);
      } else {
        pin.setLatLng(point);
      }
      if (pan) map.setView(point, Math.max(map.getZoom(), 8));
    }

    function fromInputs() {
      const la = parseFloat(lat.value), lo = parseFloat(lon.value);
      if (!isNaN(la) && !isNaN(lo) && Math.abs(la) <= 90 && Math.abs(lo) <= 180) place(la, lo, true);
    }

    map.setView([20, 0], 2);
    map.on("click", function (event) {
      const point = event.latlng.wrap();
      lat.value = point.lat.toFixed(6);
      lon.value = point.lng.toFixed(6);
      place(point.lat, point.lng, false);
    });
    lat.addEventListener("change", fromInputs);
    lon.addEventListener("change", fromInputs);
    // The upload form fills the inputs from a photo's EXIF; it tells the map with this event.
    element.addEventListener("wildweb:location", fromInputs);
    fromInputs();
  }

  document.querySelectorAll('[data-map="sightings"]').forEach(sightingsMap);
  document.querySelectorAll('[data-map="pin"]').forEach(pinMap);
})();
