// Dataset import: send the form with XHR so a large ZIP shows its upload progress, then open
// the import's own page (a worker checks the file there), or show the form with its error.
(function () {
  "use strict";
  document.querySelectorAll("form[data-upload-progress]").forEach(function (form) {
    var bar = form.querySelector("progress");
    var label = form.querySelector("[data-upload-status]");
    form.addEventListener("submit", function (event) {
      if (!window.FormData || !window.XMLHttpRequest) return; // plain submit still works
      event.preventDefault();
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.upload.addEventListener("progress", function (progress) {
        if (!progress.lengthComputable) return;
        var percent = Math.round((100 * progress.loaded) / progress.total);
        bar.value = percent;
        label.textContent = percent < 100 ? "Uploading… " + percent + "%"
                                          : "Uploaded; opening the import…";
      });
      request.addEventListener("load", function () {
        var url = request.responseURL;
        if (url && url !== new URL(form.action, location.href).href) {
          location.assign(url); // redirected to the import's page: load it as a page
          return;
        }
        document.open();
        document.write(request.responseText);
        document.close();
      });
      request.addEventListener("error", function () {
        label.textContent = "The upload failed (connection lost). Nothing was imported; try again.";
      });
      bar.hidden = false;
      bar.value = 0;
      label.textContent = "Uploading… 0%";
      form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
      request.send(new FormData(form));
    });
  });
})();
